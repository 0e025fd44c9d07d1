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
  // The static site's search: the same page, filtered in the browser over a small JSON index.
  var staticForm = document.getElementById("static-search");
  var staticOut = document.getElementById("static-results");
  if (staticForm && staticOut && window.fetch) {
    staticForm.hidden = false;
    var index = null;
    var show = function (query) {
      var words = query.toLowerCase().split(/\s+/).filter(Boolean);
      var hits = index.filter(function (r) {
        var hay = [r.title, r.label, r.license, r.model, r.language, (r.tags || []).join(" ")].join(" ").toLowerCase();
        return words.every(function (w) { return hay.indexOf(w) !== -1; });
      });
      staticOut.textContent = "";
      var p = document.createElement("p");
      p.textContent = hits.length + " record" + (hits.length === 1 ? "" : "s") + " match.";
      staticOut.appendChild(p);
      var list = document.createElement("ul");
      hits.slice(0, 200).forEach(function (r) {
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = "/browse/" + r.uid + "/";
        link.textContent = r.title || r.uid;
        item.appendChild(link);
        item.appendChild(document.createTextNode(" · " + r.label + " · " + r.license));
        list.appendChild(item);
      });
      staticOut.appendChild(list);
    };
    staticForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var query = staticForm.querySelector("input[name=q]").value;
      if (index) { show(query); return; }
      fetch(staticForm.getAttribute("data-index")).then(function (r) { return r.json(); })
        .then(function (rows) { index = rows; show(query); })
        .catch(function () { staticOut.textContent = "The search index could not be loaded."; });
    });
  }
})();
