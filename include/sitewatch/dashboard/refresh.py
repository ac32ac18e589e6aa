"""The Sites page keeps itself current: a small inline script reads the table's rows again every
``EVERY_SECONDS`` and puts them in place, without reloading the page.

It asks the same app for ``rows?sort=<the page's order>`` (``sitewatch.web.app``): the table's
``<tbody>`` as the page would write it now, in the same order, behind the same login (the
browser sends the same cookie). The line above the table says when the figures were read; when
a read fails (the login expired, the server is down) it keeps the last figures and says so
beside the time they were read. A hidden tab does not read; it reads at once when shown again.

Plain JavaScript, no library and nothing fetched from elsewhere, so the page still works on a
network without internet. The script puts only the server's own HTML (escaped there) in place.
"""

from __future__ import annotations

EVERY_SECONDS = 30

# The reply is parsed in a <template>, where a lone <tbody> is valid; its data-read is the
# "read …" line. Without an Accept of text/html, an expired login is a 401, not a redirect to the
# login page (whose HTML would then be taken for rows).
SCRIPT = """
(() => {
  const table = document.getElementById("sites"), read = document.getElementById("read");
  if (!table || !read) return;
  let shown = read.textContent;
  async function refresh() {
    if (document.hidden) return;
    try {
      const reply = await fetch("rows?sort=" + encodeURIComponent(table.dataset.sort),
                                {cache: "no-store", credentials: "same-origin"});
      if (!reply.ok) {
        const why = reply.status === 401 ? " (signed out: reload the page to sign in)" : "";
        throw new Error("HTTP " + reply.status + why);
      }
      const template = document.createElement("template");
      template.innerHTML = await reply.text();
      const rows = template.content.querySelector("tbody");
      if (!rows || !rows.dataset.read) throw new Error("the reply holds no rows");
      table.tBodies[0].replaceWith(rows);
      shown = rows.dataset.read;
      read.textContent = shown;
      read.classList.remove("err");
    } catch (error) {
      const at = new Date().toISOString().slice(11, 19);
      read.textContent = shown + " · not refreshed at " + at + " UTC: " + error.message;
      read.classList.add("err");
    }
  }
  setInterval(refresh, 1000 * Number(table.dataset.refresh));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
"""
"""The Sites page's script: the table ``#sites`` says its order (``data-sort``) and how often
to read (``data-refresh``, seconds); ``#read`` is the line it keeps current."""
