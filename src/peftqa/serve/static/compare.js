// Small conveniences only: the page works the same without JavaScript.
(function () {
  "use strict";
  var picker = document.getElementById("example");
  if (picker) {
    // Picking an example loads it at once (the "Load example" button does the same without JS).
    picker.addEventListener("change", function () {
      if (picker.value) { picker.form.submit(); }
    });
  }
  var context = document.getElementById("context");
  var count = document.getElementById("context-count");
  if (context && count) {
    var limit = parseInt(context.getAttribute("data-limit"), 10);
    var update = function () {
      var n = Array.from(context.value).length;  // characters, as the server counts them
      count.textContent = n.toLocaleString() + " characters" + (n > limit ? ": over the limit of " + limit.toLocaleString() : "");
    };
    context.addEventListener("input", update);
    update();
  }
  // Each model's "in the context" box scrolls to its highlighted answer (the box, not the page).
  Array.prototype.forEach.call(document.querySelectorAll("blockquote.context"), function (box) {
    var mark = box.querySelector("mark");
    if (mark) {
      box.scrollTop = Math.max(0, mark.offsetTop - box.clientHeight / 3);  // the box is position: relative
    }
  });
  var form = document.getElementById("ask-form");
  var submit = document.getElementById("submit");
  if (form && submit) {
    form.addEventListener("submit", function () {
      submit.disabled = true;
      submit.textContent = "Answering…";
    });
  }
})();
