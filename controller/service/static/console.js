// The live view: follow the run's server-sent events, add each to the list,
// and re-render the panel (steps, targets, probes) after each burst.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.live !== "yes" || !window.EventSource) { return; }
  var run = live.dataset.run;
  var list = document.getElementById("events");
  var last = 0;
  list.querySelectorAll("li").forEach(function (li) { last = Math.max(last, +li.dataset.seq); });
  var pending = null;
  function refresh() {
    pending = null;
    fetch("/console/runs/" + run + "?panel=1", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html) { live.innerHTML = html; } });
  }
  function soon() { if (!pending) { pending = setTimeout(refresh, 300); } }
  // The API reads the same HttpOnly cookie the console set at sign-in.
  var source = new EventSource("/api/v1/runs/" + run + "/events?after=" + last);
  source.onmessage = function (m) {
    var e = JSON.parse(m.data);
    var li = document.createElement("li");
    li.dataset.seq = e.seq;
    li.textContent = e.message;
    list.appendChild(li);
    soon();
  };
  source.addEventListener("end", function () { source.close(); refresh(); });
})();
