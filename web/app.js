// The page's logic: send the chosen image to POST /invocations and draw the top-5 answer as bars.
"use strict";
const drop = document.getElementById("drop");
const input = document.getElementById("file");
const preview = document.getElementById("preview");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");

function show(predictions) {
  results.innerHTML = "";
  for (const p of predictions[0].top_k) {
    const row = document.createElement("div");
    row.className = "row";
    row.innerHTML = '<span class="name"></span><span class="bar"></span><span class="prob"></span>';
    row.querySelector(".name").textContent = p.name;
    row.querySelector(".bar").style.width = Math.max(1, Math.round(p.probability * 300)) + "px";
    row.querySelector(".prob").textContent = (100 * p.probability).toFixed(1) + "%";
    results.appendChild(row);
  }
}

async function classify(blob) {
  preview.src = URL.createObjectURL(blob);
  preview.style.display = "block";
  statusLine.className = "";
  statusLine.textContent = "classifying...";
  try {
    const res = await fetch("/invocations?top_k=5", {
      method: "POST", headers: {"Content-Type": "application/x-image", "Accept": "application/json"}, body: blob});
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : "HTTP " + res.status);
    show(body.predictions);
    statusLine.textContent = "done";
  } catch (e) {
    results.innerHTML = "";
    statusLine.className = "error";
    statusLine.textContent = "error: " + e.message;
  }
}

drop.addEventListener("click", () => input.click());
input.addEventListener("change", () => { if (input.files.length) classify(input.files[0]); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]);
});

// Self-test for automated browsers: /?selftest draws an image on a canvas and classifies it like a dropped file.
if (new URLSearchParams(location.search).has("selftest")) {
  const c = document.createElement("canvas");
  c.width = c.height = 64;
  const g = c.getContext("2d");
  g.fillStyle = "#3a7"; g.fillRect(0, 0, 64, 64);
  g.fillStyle = "#fd3"; g.beginPath(); g.arc(32, 32, 20, 0, 2 * Math.PI); g.fill();
  c.toBlob((b) => classify(b), "image/png");
}
