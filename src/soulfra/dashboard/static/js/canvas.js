// Drawing on canvas: the weather chart (temperature, pressure, wind over ticks) and the agents by mood and energy.
// Plain 2D canvas, redrawn whole on each update (one path per series; agents batched by colour bucket), so a
// redraw stays cheap at thousands of agents.

const SERIES = [
  ["temperature", "#e07a5f"],
  ["pressure", "#3d85c6"],
  ["wind", "#81b29a"],
];

function fit(canvas) {
  // Draw at the device's pixel ratio so lines are crisp; the canvas keeps its CSS size.
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, width, height };
}

export function drawWeather(canvas, history) {
  const { ctx, width, height } = fit(canvas);
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#d9dde3";
  ctx.lineWidth = 1;
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  if (history.length < 2) return;
  const first = history[0].tick;
  const span = Math.max(1, history[history.length - 1].tick - first);
  for (const [name, colour] of SERIES) {
    const values = history.map((h) => Number(h[name]) || 0);
    let low = Math.min(...values, 0);
    let high = Math.max(...values, name === "temperature" ? 0 : 1);
    if (high - low < 1e-9) high = low + 1;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    history.forEach((h, i) => {
      const x = 4 + ((h.tick - first) / span) * (width - 8);
      const y = height - 6 - ((values[i] - low) / (high - low)) * (height - 12);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

const BUCKETS = 8; // energy colour buckets: one fill per bucket, however many agents
const DIMMED = BUCKETS; // the bucket of the agents a search leaves out
const PAINT_ORDER = [DIMMED, ...Array.from({ length: BUCKETS }, (_, bucket) => bucket)]; // the dimmed ones under
const COLOURS = Array.from({ length: BUCKETS }, (_, bucket) => `hsl(42 85% ${28 + (bucket / (BUCKETS - 1)) * 42}%)`);

// Agents arrive in the API's compact view: {id, name, mind, valence, arousal, energy}, numbers already scaled.

// The axes' reach: valence symmetric around 0, arousal from 0, each widened to the crowd's extremes (at least a
// quarter and a half of the full range), so a calm world is not a dot in the middle.
export function moodScale(agents) {
  let valence = 0.25;
  let arousal = 0.5;
  for (const agent of agents) {
    valence = Math.max(valence, Math.abs(agent.valence ?? 0) * 1.15);
    arousal = Math.max(arousal, (agent.arousal ?? 0) * 1.1);
  }
  return { valence: Math.min(1, valence), arousal: Math.min(1, arousal) };
}

// Where an agent sits: valence across (glad to the right), arousal up.
function pointX(agent, width, scale) {
  const valence = Math.max(-scale.valence, Math.min(scale.valence, agent.valence ?? 0));
  return 10 + ((valence / scale.valence + 1) / 2) * (width - 20);
}

function pointY(agent, height, scale) {
  const arousal = Math.max(0, Math.min(scale.arousal, agent.arousal ?? 0));
  return height - 10 - (arousal / scale.arousal) * (height - 20);
}

export function agentPoint(agent, width, height, scale) {
  return [pointX(agent, width, scale), pointY(agent, height, scale)];
}

// Drawing is coalesced: however many updates arrive between two frames, the canvas is painted once, in the next
// animation frame, with the latest of them. The per-agent bucket numbers live in one typed array that grows only
// when the crowd does, so a paint allocates nothing per agent.
const pending = new Map(); // canvas -> the latest arguments to paint it with
let frame = 0;
let bucketOf = new Uint8Array(0);

export function drawAgents(canvas, agents, matches, selected) {
  pending.set(canvas, [agents, matches, selected]);
  if (!frame) frame = requestAnimationFrame(paintPending);
}

function paintPending() {
  frame = 0;
  for (const [canvas, args] of pending) paintAgents(canvas, ...args);
  pending.clear();
}

function paintAgents(canvas, agents, matches, selected) {
  const { ctx, width, height } = fit(canvas);
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#d9dde3";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(width / 2, 0);
  ctx.lineTo(width / 2, height);
  ctx.stroke();
  const count = agents.length;
  const radius = count > 2000 ? 2 : count > 200 ? 3 : count > 20 ? 5 : 7;
  const square = radius <= 3; // at a few pixels a square reads as a dot, and costs a fraction of an arc
  const scale = moodScale(agents);
  if (bucketOf.length < count) bucketOf = new Uint8Array(Math.max(count, bucketOf.length * 2));
  for (let i = 0; i < count; i++) {
    const agent = agents[i];
    const energy = Math.max(0, Math.min(1, agent.energy ?? 0));
    bucketOf[i] = matches(agent) ? Math.min(BUCKETS - 1, Math.floor(energy * BUCKETS)) : DIMMED;
  }
  for (const bucket of PAINT_ORDER) {
    ctx.fillStyle = bucket === DIMMED ? "#e3e6ea" : COLOURS[bucket];
    ctx.beginPath();
    for (let i = 0; i < count; i++) {
      if (bucketOf[i] !== bucket) continue;
      const x = pointX(agents[i], width, scale);
      const y = pointY(agents[i], height, scale);
      if (square) {
        ctx.rect(x - radius, y - radius, radius * 2, radius * 2);
      } else {
        ctx.moveTo(x + radius, y);
        ctx.arc(x, y, radius, 0, 2 * Math.PI);
      }
    }
    ctx.fill();
  }
  if (count <= 50) {
    ctx.fillStyle = "#33373d";
    ctx.font = "11px system-ui, sans-serif";
    for (const agent of agents) {
      if (!matches(agent)) continue;
      ctx.fillText(agent.name ?? agent.id, pointX(agent, width, scale) + radius + 3, pointY(agent, height, scale) + 4);
    }
  }
  const chosen = selected ? agents.find((a) => a.id === selected) : undefined;
  if (chosen) {
    ctx.strokeStyle = "#1f4e79";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(pointX(chosen, width, scale), pointY(chosen, height, scale), radius + 4, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

// The agent nearest to a click, within a few pixels, or null.
export function agentAt(canvas, agents, all, event) {
  const rect = canvas.getBoundingClientRect();
  const scale = moodScale(all);
  const px = event.clientX - rect.left;
  const py = event.clientY - rect.top;
  let best = null;
  let bestDistance = 12 * 12;
  for (const agent of agents) {
    const distance = (pointX(agent, rect.width, scale) - px) ** 2 + (pointY(agent, rect.height, scale) - py) ** 2;
    if (distance < bestDistance) {
      best = agent;
      bestDistance = distance;
    }
  }
  return best;
}
