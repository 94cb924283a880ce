/* neuronatlas viewer: keyboard navigation, histogram scale, token readout, filter form.
 * Data is only ever written with textContent; this script never parses HTML. */
(function () {
  "use strict";

  function isTyping(target) {
    return !!target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function follow(id, event) {
    var link = document.getElementById(id);
    if (link && link.getAttribute("href")) {
      event.preventDefault();
      window.location.href = link.href;
      return true;
    }
    return false;
  }

  // Keyboard: j / → next unit, k / ← previous unit, u back to the table, / focuses search.
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || isTyping(event.target)) {
      return;
    }
    var key = event.key;
    if (key === "/") {
      var search = document.getElementById("f-q");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
    } else if (key === "j" || key === "ArrowRight") {
      follow("next-unit", event);
    } else if (key === "k" || key === "ArrowLeft") {
      follow("prev-unit", event);
    } else if (key === "u") {
      follow("back-link", event);
    }
  });

  // Histogram: log / linear toggle.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-hist]") : null;
    if (!button) {
      return;
    }
    var box = button.closest(".hist");
    box.setAttribute("data-mode", button.getAttribute("data-hist"));
    box.querySelectorAll("[data-hist]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b === button));
    });
  });

  // Histogram: the bin under the pointer, from the bins in the SVG's data attributes.
  document.addEventListener("mousemove", function (event) {
    var svg = event.target.closest ? event.target.closest("svg.hist-svg") : null;
    if (!svg) {
      return;
    }
    var readout = svg.closest(".hist").querySelector(".hist-readout");
    var edges = svg.getAttribute("data-edges").split(" ").map(Number);
    var counts = svg.getAttribute("data-counts").split(" ").map(Number);
    var box = svg.getBoundingClientRect();
    var scale = box.width / svg.viewBox.baseVal.width;
    var x0 = Number(svg.getAttribute("data-x0")) * scale;
    var x1 = Number(svg.getAttribute("data-x1")) * scale;
    var f = (event.clientX - box.left - x0) / (x1 - x0);
    if (f < 0 || f >= 1) {
      readout.textContent = "";
      return;
    }
    var value = edges[0] + f * (edges[edges.length - 1] - edges[0]);
    var i = 0;
    while (i < counts.length - 1 && edges[i + 1] <= value) {
      i++;
    }
    readout.textContent = "[" + edges[i].toPrecision(4) + ", " + edges[i + 1].toPrecision(4) + "): " +
      counts[i].toLocaleString("en-US");
  });

  // Exemplars: show the hovered token and its activation in the readout line.
  document.addEventListener("mouseover", function (event) {
    var token = event.target.closest ? event.target.closest(".exemplars .ctx > span") : null;
    var readout = document.getElementById("readout");
    if (!token || !readout) {
      return;
    }
    var ex = token.closest(".ex");
    var rank = ex ? Number(ex.getAttribute("data-rank")) + 1 : "?";
    var pos = Number(token.parentNode.getAttribute("data-start")) + Array.prototype.indexOf.call(token.parentNode.children, token);
    readout.textContent = "#" + rank + "  pos " + pos + "  " + JSON.stringify(token.textContent) + "  " + token.getAttribute("title");
  });

  // Filter form (server mode): drop empty fields, fold the range inputs into one `range`.
  var form = document.getElementById("filters");
  if (form && !document.body.hasAttribute("data-static")) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var params = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (value !== "" && key !== "page") {
          params.append(key, value);
        }
      });
      var lo = document.getElementById("f-rlo").value.trim();
      var hi = document.getElementById("f-rhi").value.trim();
      if (lo !== "" || hi !== "") {
        params.append("range", document.getElementById("f-rcol").value + ":" + lo + ":" + hi);
      }
      var query = params.toString();
      window.location.href = form.getAttribute("action") + (query ? "?" + query : "");
    });
    form.querySelectorAll("select[name]").forEach(function (select) {
      select.addEventListener("change", function () {
        form.requestSubmit();
      });
    });
  }
})();
