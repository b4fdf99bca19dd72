// `taskfabric ui` prints a link with the token after '#': it never reaches the server's logs.
const found = new URLSearchParams(location.hash.slice(1)).get("token");
if (found) {
  history.replaceState(null, "", location.pathname + location.search);
  document.getElementById("token").value = found;
  document.getElementById("signin").submit();
}
