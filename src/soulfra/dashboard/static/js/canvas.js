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

function energyColour(bucket) {
  const light = 28 + (bucket / (BUCKETS - 1)) * 42;
  return `hsl(42 85% ${light}%)`;
}

// The axes' reach: valence symmetric around 0, arousal from 0, each widened to the crowd's extremes (at least a
// quarter and a half of the full range), so a calm world is not a dot in the middle.
export function moodScale(agents) {
  let valence = 0.25;
  let arousal = 0.5;
  for (const agent of agents) {
    valence = Math.max(valence, Math.abs(agent.mood?.valence ?? 0) * 1.15);
    arousal = Math.max(arousal, (agent.mood?.arousal ?? 0) * 1.1);
  }
  return { valence: Math.min(1, valence), arousal: Math.min(1, arousal) };
}

// Where each agent sits: valence across (glad to the right), arousal up.
export function agentPoint(agent, width, height, scale) {
  const valence = Math.max(-scale.valence, Math.min(scale.valence, agent.mood?.valence ?? 0));
  const arousal = Math.max(0, Math.min(scale.arousal, agent.mood?.arousal ?? 0));
  const x = 10 + ((valence / scale.valence + 1) / 2) * (width - 20);
  return [x, height - 10 - (arousal / scale.arousal) * (height - 20)];
}

export function drawAgents(canvas, agents, matches, selected) {
  const { ctx, width, height } = fit(canvas);
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#d9dde3";
  ctx.beginPath();
  ctx.moveTo(width / 2, 0);
  ctx.lineTo(width / 2, height);
  ctx.stroke();
  const radius = agents.length > 2000 ? 2 : agents.length > 200 ? 3 : agents.length > 20 ? 5 : 7;
  const scale = moodScale(agents);
  const buckets = Array.from({ length: BUCKETS }, () => []);
  const dimmed = [];
  for (const agent of agents) {
    const scale = agent.state?.scale || 1;
    const energy = Math.max(0, Math.min(1, (agent.state?.energy ?? 0) / scale));
    (matches(agent) ? buckets[Math.min(BUCKETS - 1, Math.floor(energy * BUCKETS))] : dimmed).push(agent);
  }
  ctx.fillStyle = "#e3e6ea";
  ctx.beginPath();
  for (const agent of dimmed) {
    const [x, y] = agentPoint(agent, width, height, scale);
    ctx.moveTo(x + radius, y);
    ctx.arc(x, y, radius, 0, 2 * Math.PI);
  }
  ctx.fill();
  buckets.forEach((group, bucket) => {
    ctx.fillStyle = energyColour(bucket);
    ctx.beginPath();
    for (const agent of group) {
      const [x, y] = agentPoint(agent, width, height, scale);
      ctx.moveTo(x + radius, y);
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
    }
    ctx.fill();
  });
  if (agents.length <= 50) {
    ctx.fillStyle = "#33373d";
    ctx.font = "11px system-ui, sans-serif";
    for (const agent of agents) {
      if (!matches(agent)) continue;
      const [x, y] = agentPoint(agent, width, height, scale);
      ctx.fillText(agent.name ?? agent.id, x + radius + 3, y + 4);
    }
  }
  const chosen = agents.find((a) => a.id === selected);
  if (chosen) {
    const [x, y] = agentPoint(chosen, width, height, scale);
    ctx.strokeStyle = "#1f4e79";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(x, y, radius + 4, 0, 2 * Math.PI);
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
    const [x, y] = agentPoint(agent, rect.width, rect.height, scale);
    const distance = (x - px) ** 2 + (y - py) ** 2;
    if (distance < bestDistance) {
      best = agent;
      bestDistance = distance;
    }
  }
  return best;
}
