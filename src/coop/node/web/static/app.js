// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Live redaction preview on the contribute page: the same redactor as the pipeline.
  var form = document.getElementById("contribute-form");
  var live = document.getElementById("live-preview");
  if (form && live) {
    var text = form.querySelector("textarea[name=text]");
    var csrf = form.querySelector("input[name=csrf]");
    var timer = null;
    var render = function (data) {
      live.textContent = "";
      var heading = document.createElement("h3");
      var total = data.hits.length;
      heading.textContent = total === 0 ? "Nothing will be replaced." :
        total + " piece" + (total === 1 ? "" : "s") + " of personal data will be replaced:";
      live.appendChild(heading);
      var pre = document.createElement("div");
      pre.className = "message";
      var last = 0;
      data.hits.forEach(function (hit) {
        pre.appendChild(document.createTextNode(data.original.slice(last, hit.start)));
        var mark = document.createElement("mark");
        mark.textContent = data.original.slice(hit.start, hit.end);
        var kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = hit.type;
        mark.appendChild(kind);
        pre.appendChild(mark);
        last = hit.end;
      });
      pre.appendChild(document.createTextNode(data.original.slice(last)));
      live.appendChild(pre);
    };
    var ask = function () {
      if (!text || !text.value.trim()) { live.textContent = ""; return; }
      fetch("/contribute/preview", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.value : "" },
        body: JSON.stringify({ text: text.value }),
        credentials: "same-origin"
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
        if (data) { data.original = text.value; render(data); }
      }).catch(function () { /* the Preview button still works */ });
    };
    if (text) {
      text.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(ask, 400); });
    }
  }
  // Ask before a destructive form is sent (the confirmation page explains; this is a second guard).
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
})();
