// framewire live preview: polls the stream list, shows one stream's frames
// (Server-Sent Events) on a canvas and draws the boxes itself. No build
// step, no dependencies.
"use strict";

const PALETTE = ["#ff2d55", "#00c7ff", "#ffd60a", "#30d158", "#bf5af2", "#ff9f0a", "#64d2ff", "#ff375f"];
const canvas = document.getElementById("frame");
const context = canvas.getContext("2d");
const rows = document.querySelector("#streams tbody");
// A preview off loopback asks for the gRPC port's token: open it as /?token=TOKEN.
const token = new URLSearchParams(location.search).get("token");
const auth = token ? `token=${encodeURIComponent(token)}` : "";
const state = { chosen: null, chosenId: null, events: null, drawn: null, framesDrawn: 0, paused: false, busy: false };

function colour(detection) {
  const n = detection.track_id !== null ? detection.track_id : detection.class_id;
  return PALETTE[n % PALETTE.length];
}

function ms(value) { return value === null ? "–" : `${Math.round(value)} ms`; }
function rate(value) { return value === null ? "–" : value.toFixed(1); }
function counts(table) {
  const shown = Object.entries(table).filter(([, n]) => n > 0).map(([reason, n]) => `${n} ${reason}`);
  return shown.length ? shown.join(", ") : "none";
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function showStreams(list) {
  rows.replaceChildren();
  document.getElementById("no-streams").hidden = list.streams.length > 0;
  for (const stream of list.streams) {
    const row = document.createElement("tr");
    row.dataset.key = stream.key;
    row.dataset.streamId = stream.stream_id;
    if (stream.key === state.chosen) row.classList.add("chosen");
    cell(row, stream.stream_id);
    cell(row, rate(stream.fps_in));
    cell(row, rate(stream.fps_processed));
    cell(row, ms(stream.e2e_ms.p50));
    cell(row, ms(stream.e2e_ms.p95));
    cell(row, counts(stream.skipped_server));
    cell(row, counts(stream.skipped_edge));
    cell(row, stream.tracking ? "on" : "off");
    row.addEventListener("click", () => choose(stream));
    rows.appendChild(row);
  }
  const current = list.streams.find((s) => s.key === state.chosen);
  if (!current && list.streams.length) {
    // Keep following the same device after it reconnects; else the first stream.
    choose(list.streams.find((s) => s.stream_id === state.chosenId) || list.streams[0]);
  }
}

function choose(stream) {
  if (state.events) state.events.close();
  state.chosen = stream.key;
  state.chosenId = stream.stream_id;
  document.getElementById("view-title").textContent = `Stream ${stream.stream_id}`;
  for (const row of rows.children) row.classList.toggle("chosen", Number(row.dataset.key) === stream.key);
  const events = new EventSource(`events?stream=${stream.key}${auth ? "&" + auth : ""}`);
  events.addEventListener("frame", (event) => draw(JSON.parse(event.data)));
  events.addEventListener("closed", () => { events.close(); state.chosen = null; });
  state.events = events;
}

async function draw(frame) {
  // A frame that arrives while the previous one is still decoding is dropped:
  // the next one will be newer anyway.
  if (state.paused || state.busy) return;
  state.busy = true;
  try {
    const bytes = Uint8Array.from(atob(frame.jpeg), (c) => c.charCodeAt(0));
    const image = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }));
    if (state.paused) return;
    canvas.width = image.width;
    canvas.height = image.height;
    context.drawImage(image, 0, 0);
    image.close();
    const line = Math.max(2, Math.round(canvas.width / 320));
    context.lineWidth = line;
    context.font = `${Math.max(12, Math.round(canvas.width / 45))}px system-ui, sans-serif`;
    context.textBaseline = "bottom";
    const drawn = [];
    for (const detection of frame.detections) {
      const [x0, y0, x1, y1] = detection.box;
      const x = x0 * canvas.width, y = y0 * canvas.height;
      const w = (x1 - x0) * canvas.width, h = (y1 - y0) * canvas.height;
      const fill = colour(detection);
      context.strokeStyle = fill;
      context.strokeRect(x, y, w, h);
      const label = `${detection.label}${detection.track_id !== null ? " #" + detection.track_id : ""} ${detection.score.toFixed(2)}`;
      const width = context.measureText(label).width + 6;
      const top = y > 20 ? y : y + 20;
      const left = Math.max(0, Math.min(x - line / 2, canvas.width - width)); // stays in the frame
      context.fillStyle = fill;
      context.fillRect(left, top - 18, width, 18);
      context.fillStyle = "#000";
      context.fillText(label, left + 3, top - 2);
      drawn.push({ ...detection, colour: fill });
    }
    state.drawn = { key: frame.key, seq: frame.seq, width: canvas.width, height: canvas.height, detections: drawn };
    state.framesDrawn += 1;
    const tracked = frame.detections.filter((d) => d.track_id !== null).length;
    document.getElementById("frame-info").textContent =
      `frame ${frame.seq}, ${frame.width}×${frame.height}: ${frame.detections.length} detections` +
      `${tracked ? `, ${tracked} tracked` : ""}; server ${frame.server_ms} ms, batch of ${frame.batch_size}`;
  } finally {
    state.busy = false;
  }
}

async function poll() {
  try {
    const response = await fetch(`api/streams${auth ? "?" + auth : ""}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const list = await response.json();
    showStreams(list);
    document.getElementById("status").textContent =
      `${list.streams.length} stream(s) open, ${list.viewers} of ${list.max_viewers} viewers`;
  } catch (error) {
    document.getElementById("status").textContent = `cannot reach the server: ${error.message}`;
  }
  setTimeout(poll, 1000);
}

// For people debugging, and for the browser test: what was drawn where.
window.framewirePreview = {
  state() {
    const rect = canvas.getBoundingClientRect();
    return {
      drawn: state.drawn,
      framesDrawn: state.framesDrawn,
      canvas: { left: rect.left, top: rect.top, width: rect.width, height: rect.height },
      devicePixelRatio: window.devicePixelRatio,
      rows: Array.from(rows.children, (row) => Array.from(row.children, (td) => td.textContent)),
      header: Array.from(document.querySelectorAll("#streams th"), (th) => th.textContent),
    };
  },
  pause() { state.paused = true; return this.state(); },
  resume() { state.paused = false; },
};

poll();
