// Chapters are MyST markdown (.md), which Colab cannot open; keep the Colab launch button only on
// pages built from .ipynb notebooks.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll('a[href*="colab.research.google.com"]').forEach((link) => {
    if (!link.href.endsWith(".ipynb")) {
      (link.closest("li") || link).remove();
    }
  });
});
