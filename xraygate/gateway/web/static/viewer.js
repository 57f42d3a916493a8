// Study viewer: plain canvas code, no library. Each <figure class="viewer"> gets window/level
// (presets and drag; the server renders the PNG for a window: /rendered?wc=&ww= or ?preset=),
// wheel / button / keyboard zoom, drag pan, a full-resolution switch (?size=) and the model's
// saliency map (/saliency, 8-bit grey) drawn as a semi-transparent heat map over the image.
// Without JavaScript the server-rendered <img> stays. State for tests and assistive tech:
// data-state (loading / idle), data-renders (images drawn), data-window ("centre width").
"use strict";
(function () {
  const MIN_ZOOM = 0.5;
  const MAX_ZOOM = 16;
  const OVERLAY_ALPHA = 0.55;

  function heatColour(v) {
    // 0 -> transparent, then blue, green, yellow, red as the map rises
    const r = Math.min(255, Math.max(0, 4 * v - 1.5) * 255);
    const g = Math.min(255, Math.max(0, Math.min(4 * v - 0.5, -4 * v + 3.5)) * 255);
    const b = Math.min(255, Math.max(0, Math.min(4 * v + 0.5, -4 * v + 2.5)) * 255);
    const a = v < 0.1 ? 0 : Math.min(255, v * 1.4 * 255);
    return [r, g, b, a];
  }

  async function bitmap(response) {
    const blob = await response.blob();
    return createImageBitmap(blob);
  }

  class Viewer {
    constructor(root) {
      this.root = root;
      this.canvas = root.querySelector("canvas.view");
      this.ctx = this.canvas.getContext("2d");
      this.img = root.querySelector("img.dicom");
      this.tools = root.querySelector(".viewer-tools");
      this.preset = root.querySelector("select.preset");
      this.dragMode = root.querySelector("select.drag");
      this.full = root.querySelector("input.full");
      this.overlay = root.querySelector("input.overlay");
      this.wl = root.querySelector(".wl");
      this.info = root.querySelector(".view-info");
      this.src = root.dataset.src;
      this.size = Number(root.dataset.size) || 1024;
      this.fullSize = Number(root.dataset.fullSize) || this.size;
      this.image = null;
      this.heat = null;
      this.sourceSize = [1, 1];
      this.range = null;
      this.window = null;
      this.zoom = 1;
      this.pan = [0, 0];
      this.query = "";
      this.wanted = null;
      this.busy = false;
      this.renders = 0;
      this.drag = null;
    }

    start() {
      this.img.hidden = true;
      this.canvas.hidden = false;
      this.tools.hidden = false;
      this.root.querySelector(".viewer-hint").hidden = false;
      this.resize();
      new ResizeObserver(() => this.resize()).observe(this.canvas);
      this.preset.addEventListener("change", () => this.choosePreset());
      this.full.addEventListener("change", () => this.request(this.params()));
      this.overlay.addEventListener("change", () => this.toggleOverlay());
      this.tools.querySelectorAll("button[data-zoom]").forEach((button) => {
        button.addEventListener("click", () => this.zoomButton(button.dataset.zoom));
      });
      this.canvas.addEventListener("wheel", (e) => this.wheel(e), {passive: false});
      this.canvas.addEventListener("pointerdown", (e) => this.pointerDown(e));
      this.canvas.addEventListener("pointermove", (e) => this.pointerMove(e));
      this.canvas.addEventListener("pointerup", (e) => this.pointerUp(e));
      this.canvas.addEventListener("pointercancel", (e) => this.pointerUp(e));
      this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
      this.canvas.addEventListener("keydown", (e) => this.key(e));
      this.request("");
    }

    // -- loading: the newest request wins; one fetch at a time ---------------------------------
    params() {
      const out = new URLSearchParams();
      if (this.full.checked) { out.set("size", String(this.fullSize)); }
      if (this.preset.value === "custom" && this.window) {
        out.set("wc", this.window[0].toFixed(2));
        out.set("ww", this.window[1].toFixed(2));
      } else if (this.preset.value !== "default" && this.preset.value !== "custom") {
        out.set("preset", this.preset.value);
      }
      return out.toString();
    }

    request(query) {
      this.wanted = query;
      this.root.dataset.state = "loading";
      if (!this.busy) { this.load(); }
    }

    async load() {
      this.busy = true;
      while (this.wanted !== null) {
        const query = this.wanted;
        this.wanted = null;
        try {
          const response = await fetch(this.src + (query ? "?" + query : ""),
            {credentials: "same-origin"});
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          this.readHeaders(response.headers);
          this.image = await bitmap(response);
          this.query = query;
          this.renders += 1;
          this.draw();
        } catch (err) {
          this.info.textContent = "image not loaded: " + err.message;
        }
      }
      this.busy = false;
      this.root.dataset.renders = String(this.renders);
      this.root.dataset.state = "idle";
    }

    readHeaders(headers) {
      const numbers = (name) => (headers.get(name) || "").split(" ").filter(Boolean).map(Number);
      const size = numbers("X-Image-Size");
      if (size.length === 2) { this.sourceSize = size; }
      const range = numbers("X-Value-Range");
      if (range.length === 2) { this.range = range; }
      const win = numbers("X-Window");
      if (win.length === 2 && this.preset.value !== "custom") { this.window = win; }
      this.showWindow();
    }

    showWindow() {
      if (this.window) {
        const [c, w] = this.window;
        this.wl.textContent = "W " + Math.round(w) + " / L " + Math.round(c);
        this.root.dataset.window = c.toFixed(2) + " " + w.toFixed(2);
      }
    }

    async loadHeat() {
      const response = await fetch(this.root.dataset.saliency, {credentials: "same-origin"});
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      const grey = await bitmap(response);
      const heat = document.createElement("canvas");
      heat.width = grey.width;
      heat.height = grey.height;
      const ctx = heat.getContext("2d");
      ctx.drawImage(grey, 0, 0);
      const data = ctx.getImageData(0, 0, heat.width, heat.height);
      for (let i = 0; i < data.data.length; i += 4) {
        const [r, g, b, a] = heatColour(data.data[i] / 255);
        data.data[i] = r; data.data[i + 1] = g; data.data[i + 2] = b; data.data[i + 3] = a;
      }
      ctx.putImageData(data, 0, 0);
      this.heat = heat;
    }

    async toggleOverlay() {
      if (this.overlay.checked && !this.heat) {
        this.root.dataset.state = "loading";
        try {
          await this.loadHeat();
        } catch (err) {
          this.info.textContent = "saliency map not loaded: " + err.message;
          this.overlay.checked = false;
        }
        this.root.dataset.state = this.busy ? "loading" : "idle";
      }
      this.draw();
    }

    // -- drawing: the image in source coordinates, fitted, zoomed and panned ------------------
    resize() {
      const ratio = window.devicePixelRatio || 1;
      const width = Math.max(1, Math.round(this.canvas.clientWidth * ratio));
      const height = Math.max(1, Math.round(this.canvas.clientHeight * ratio));
      if (this.canvas.width !== width || this.canvas.height !== height) {
        this.canvas.width = width;
        this.canvas.height = height;
        this.draw();
      }
    }

    rect() {
      const ratio = window.devicePixelRatio || 1;
      const [sw, sh] = this.sourceSize;
      const scale = Math.min(this.canvas.width / sw, this.canvas.height / sh) * this.zoom;
      const w = sw * scale;
      const h = sh * scale;
      return [(this.canvas.width - w) / 2 + this.pan[0] * ratio,
        (this.canvas.height - h) / 2 + this.pan[1] * ratio, w, h];
    }

    draw() {
      const ctx = this.ctx;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      if (!this.image) { return; }
      const [x, y, w, h] = this.rect();
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(this.image, x, y, w, h);
      if (this.overlay.checked && this.heat) {
        ctx.globalAlpha = OVERLAY_ALPHA;
        ctx.drawImage(this.heat, x, y, w, h);
        ctx.globalAlpha = 1;
      }
      const [sw, sh] = this.sourceSize;
      this.info.textContent = "· " + sw + " × " + sh + " px" +
        (this.full.checked ? " (full resolution, " + this.image.width + " × " +
          this.image.height + " shown)" : "") + " · zoom " + this.zoom.toFixed(2) + "×";
      this.root.dataset.zoom = this.zoom.toFixed(3);
      this.root.dataset.overlay = this.overlay.checked && this.heat ? "shown" : "hidden";
    }

    // -- interaction -----------------------------------------------------------------------
    zoomAt(factor, px, py) {
      const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
      const applied = zoom / this.zoom;
      // keep the point under (px, py) (CSS pixels from the canvas centre) where it is
      this.pan = [px - (px - this.pan[0]) * applied, py - (py - this.pan[1]) * applied];
      this.zoom = zoom;
      this.draw();
    }

    zoomButton(what) {
      if (what === "fit") {
        this.zoom = 1;
        this.pan = [0, 0];
        this.draw();
      } else {
        this.zoomAt(what === "in" ? 1.25 : 0.8, 0, 0);
      }
    }

    wheel(event) {
      event.preventDefault();
      const box = this.canvas.getBoundingClientRect();
      const px = event.clientX - box.left - box.width / 2;
      const py = event.clientY - box.top - box.height / 2;
      this.zoomAt(Math.exp(-event.deltaY * 0.0015), px, py);
    }

    choosePreset() {
      if (this.preset.value !== "custom") { this.request(this.params()); }
    }

    adjustWindow(dx, dy) {
      if (!this.window) { return; }
      const span = this.range ? Math.max(this.range[1] - this.range[0], 1) : this.window[1];
      const [c, w] = this.window;
      this.window = [c + dy * span * 0.002, Math.max(1, w * Math.exp(dx * 0.005))];
      this.preset.value = "custom";
      this.showWindow();
      this.request(this.params());
    }

    pointerDown(event) {
      const windowing = event.button === 2 || event.shiftKey || this.dragMode.value === "window";
      this.drag = {x: event.clientX, y: event.clientY, windowing: windowing};
      this.canvas.setPointerCapture(event.pointerId);
      this.canvas.focus();
    }

    pointerMove(event) {
      if (!this.drag) { return; }
      const dx = event.clientX - this.drag.x;
      const dy = event.clientY - this.drag.y;
      this.drag.x = event.clientX;
      this.drag.y = event.clientY;
      if (this.drag.windowing) {
        this.adjustWindow(dx, dy);
      } else {
        this.pan = [this.pan[0] + dx, this.pan[1] + dy];
        this.draw();
      }
    }

    pointerUp(event) {
      if (this.drag && this.canvas.hasPointerCapture(event.pointerId)) {
        this.canvas.releasePointerCapture(event.pointerId);
      }
      this.drag = null;
    }

    key(event) {
      const step = 40;
      const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step],
        ArrowDown: [0, step]};
      if (event.key in moves) {
        const [dx, dy] = moves[event.key];
        if (event.shiftKey) {
          this.adjustWindow(dx, dy);
        } else {
          this.pan = [this.pan[0] + dx, this.pan[1] + dy];
          this.draw();
        }
      } else if (event.key === "+" || event.key === "=") {
        this.zoomButton("in");
      } else if (event.key === "-") {
        this.zoomButton("out");
      } else if (event.key === "0") {
        this.zoomButton("fit");
      } else {
        return;
      }
      event.preventDefault();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const viewers = [];
    document.querySelectorAll("figure.viewer").forEach((root) => {
      const viewer = new Viewer(root);
      viewer.start();
      viewers.push(viewer);
    });
    window.xraygateViewers = viewers;
  });
})();
