// The instances page: htmx refreshes the table and the lineage graph; when the session has ended (signed out
// elsewhere, the token revoked, the server restarted) the refresh is refused, and the page goes back to sign-in.

document.body.addEventListener("htmx:responseError", (event) => {
  if (event.detail.xhr?.status === 401) window.location.assign("/");
});
