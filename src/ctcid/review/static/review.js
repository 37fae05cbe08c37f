// ctcid review: keyboard-first decisions on the server-rendered grid. Plain JavaScript, no dependencies.
(() => {
  "use strict";
  const body = document.body;
  const token = body.dataset.token || "";
  const reviewer = body.dataset.reviewer || "";
  const amp = body.dataset.amp || "";
  const grid = document.getElementById("grid");
  const zoomImg = document.getElementById("zoom-img");
  const zoomCaption = document.getElementById("zoom-caption");
  const message = document.getElementById("message");
  const cells = () => Array.from(grid.querySelectorAll("figure.cell"));
  let focus = 0;
  let saliency = true;
  let queue = Promise.resolve(); // requests run one after another, so an undo follows its decision

  function say(text) {
    message.textContent = text || "";
  }

  async function post(url, payload) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers["X-Ctcid-Token"] = token;
    const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(payload) });
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const detail = data && data.detail;
      throw new Error(typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : response.statusText);
    }
    return data;
  }

  function zoomSrc(fig) {
    const sal = saliency && fig.dataset.saliency === "1" ? "&saliency=1" : "";
    return "/cells/" + fig.dataset.row + ".png?scale=4" + sal + amp;
  }

  function setFocus(i) {
    const all = cells();
    if (!all.length) return;
    focus = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((f, k) => f.classList.toggle("focus", k === focus));
    const fig = all[focus];
    fig.scrollIntoView({ block: "nearest" });
    zoomImg.src = zoomSrc(fig);
    const d = fig.dataset.decision ? " · decided " + fig.dataset.decision : "";
    zoomCaption.textContent =
      fig.dataset.sampleId + " / " + fig.dataset.cellId + " · p(CTC) " + Number(fig.dataset.p).toFixed(3) + d;
  }

  function setDecision(fig, decision) {
    fig.dataset.decision = decision || "";
    fig.classList.remove("decided", "ctc", "wbc", "unsure");
    if (decision) fig.classList.add("decided", decision);
    fig.querySelector(".badge").textContent = decision || "";
  }

  function showProgress(p) {
    if (!p) return;
    const box = document.getElementById("progress");
    box.querySelector(".reviewed").textContent = p.reviewed;
    box.querySelector(".remaining").textContent = p.remaining;
    box.querySelector(".mine").textContent = p.mine;
    box.dataset.reviewed = p.reviewed;
    box.dataset.mine = p.mine;
  }

  function showSample(row) {
    if (!row) return;
    const tr = Array.from(document.querySelectorAll("#counts tr[data-sample]")).find(
      (r) => r.dataset.sample === row.sample_id
    );
    if (!tr) return;
    for (const key of ["reviewed", "remaining", "confirmed_ctc", "confirmed_wbc", "open"]) {
      tr.querySelector("." + key).textContent = row[key];
    }
    tr.querySelector(".estimate").textContent =
      row.ctc_estimate.toFixed(1) + " [" + row.ctc_estimate_lo + ", " + row.ctc_estimate_hi + "]";
  }

  function figureOf(sampleId, cellId) {
    return cells().find((f) => f.dataset.sampleId === sampleId && f.dataset.cellId === cellId);
  }

  function decide(decision, index) {
    const all = cells();
    const i = index === undefined ? focus : index;
    const fig = all[i];
    if (!fig) return;
    const before = fig.dataset.decision;
    setDecision(fig, decision);
    const payload = { cell_id: fig.dataset.cellId, sample_id: fig.dataset.sampleId, decision };
    if (reviewer) payload.reviewer = reviewer;
    queue = queue.then(async () => {
      try {
        const out = await post("/api/decisions", payload);
        showProgress(out.progress);
        showSample(out.sample);
        say("");
      } catch (err) {
        setDecision(fig, before);
        say("not saved (" + fig.dataset.cellId + "): " + err.message);
      }
    });
    const next = all.findIndex((f, k) => k > i && !f.dataset.decision);
    if (next >= 0) setFocus(next);
    else if (i + 1 < all.length) setFocus(i + 1);
    else say("End of this page: press n (or the link below the grid) for the next cells.");
  }

  function undo() {
    queue = queue.then(async () => {
      try {
        const out = await post("/api/undo", reviewer ? { reviewer } : {});
        showProgress(out.progress);
        if (!out.undone) {
          say("nothing to undo");
          return;
        }
        showSample(out.undone.sample);
        const fig = figureOf(out.undone.sample_id, out.undone.cell_id);
        if (fig) {
          setDecision(fig, out.undone.restored);
          setFocus(cells().indexOf(fig));
        }
        say("undone: " + out.undone.decision + " on " + out.undone.cell_id);
      } catch (err) {
        say("undo failed: " + err.message);
      }
    });
  }

  function columns() {
    const all = cells();
    if (!all.length) return 1;
    const top = all[0].offsetTop;
    const n = all.findIndex((f) => f.offsetTop !== top);
    return n < 0 ? all.length : n;
  }

  function nextPage() {
    const link = document.getElementById("next-page");
    if (link) queue.then(() => (window.location.href = link.href));
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    const keys = {
      c: () => decide("ctc"),
      w: () => decide("wbc"),
      u: () => decide("unsure"),
      z: undo,
      s: () => {
        saliency = !saliency;
        setFocus(focus);
      },
      n: nextPage,
      ArrowRight: () => setFocus(focus + 1),
      ArrowLeft: () => setFocus(focus - 1),
      ArrowDown: () => setFocus(focus + columns()),
      ArrowUp: () => setFocus(focus - columns()),
    };
    const act = keys[ev.key];
    if (act) {
      ev.preventDefault();
      act();
    }
  });

  grid.addEventListener("click", (ev) => {
    const fig = ev.target.closest("figure.cell");
    if (!fig) return;
    const i = cells().indexOf(fig);
    const button = ev.target.closest("button[data-decide]");
    if (button) decide(button.dataset.decide, i);
    else setFocus(i);
  });
  document.querySelectorAll(".zoom-buttons button[data-decide]").forEach((b) =>
    b.addEventListener("click", () => decide(b.dataset.decide))
  );
  document.getElementById("undo").addEventListener("click", undo);

  const first = cells().findIndex((f) => !f.dataset.decision);
  setFocus(first >= 0 ? first : 0);
})();
