// Copy buttons: the only script, and the pages work without it.
document.querySelectorAll("button.copy").forEach(function (b) {
  if (!navigator.clipboard) return;
  b.hidden = false;
  b.addEventListener("click", function () {
    var el = document.getElementById(b.dataset.copy);
    var text = el.tagName === "OL"
      ? Array.from(el.querySelectorAll("code")).map(function (c) { return c.textContent; }).join("\n")
      : el.textContent;
    navigator.clipboard.writeText(text).then(function () { b.textContent = "Copied"; });
  });
});
