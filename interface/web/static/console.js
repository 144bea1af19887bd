// Small progressive enhancements; every flow works without this file.
(function () {
  "use strict";
  function ready(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }
  ready(function () {
    // "Select all" checkbox over a table of row checkboxes (bulk retry/discard).
    document.querySelectorAll("input[data-select-all]").forEach(function (all) {
      var name = all.getAttribute("data-select-all");
      var form = all.form || document;
      all.addEventListener("change", function () {
        form.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) { box.checked = all.checked; });
      });
    });
    // Put the caret on the failing field in the edit-and-resubmit editor.
    var editor = document.querySelector("textarea[data-select-start]");
    if (editor) {
      var start = parseInt(editor.getAttribute("data-select-start"), 10);
      var end = parseInt(editor.getAttribute("data-select-end"), 10);
      if (!isNaN(start) && !isNaN(end)) {
        editor.focus();
        editor.setSelectionRange(start, end);
        var line = editor.value.slice(0, start).split("\n").length - 1;
        var lh = parseFloat(getComputedStyle(editor).lineHeight) || 18;
        editor.scrollTop = Math.max(0, (line - 2) * lh);
      }
    }
  });
})();
