// transferlab's web stylizer: model.onnx (written by task=export_web) run by onnxruntime-web on an uploaded image
// or the webcam. model.json says which network it is: per_style (input "image") or arbitrary (inputs "content",
// "style" and "alpha"). Images are RGB in [0, 1], [1, 3, H, W]; the output is blended with the input by the
// strength (0 the input, 1 the network's output), as apply_fast's task.alpha and the CLI's strength maps do.
// Images are only ever decoded (createImageBitmap) and drawn; nothing taken from a file is put into the page
// as markup, and the page's Content-Security-Policy runs this folder's scripts only.
const $ = (id) => document.getElementById(id);
// onnxruntime-web's WebGPU build where the browser has an adapter; else its WASM-only build, half the download
// and faster on a CPU than the WebGPU build's own WASM backend.
const RUNTIMES = { webgpu: "./ort/ort.webgpu.bundle.min.mjs", wasm: "./ort/ort.wasm.bundle.min.mjs" };
let ort; // the runtime module loaded
const SIZES = [128, 256, 384, 512, 768, 1024, 1536, 2048];

class UserError extends Error {}

const state = {
  config: null,
  session: null,
  content: null, // an ImageBitmap, or the <video> while the webcam runs
  style: null, // the style's tensor (arbitrary-style networks)
  busy: false,
  again: false,
  frames: 0,
  stream: null,
  recent: [], // end times of the last frames, for the webcam's frames per second
};

function setStatus(text) {
  $("status").textContent = text;
}

function showError(error) {
  const box = $("error");
  box.textContent = error instanceof UserError ? error.message : `Something went wrong: ${error.message || error}`;
  box.hidden = false;
  document.body.dataset.state = "error";
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// The width and height that fit `size` on the long side (never enlarged).
function fitted(width, height, size) {
  const scale = Math.min(1, size / Math.max(width, height));
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

function sourceSize(source) {
  return source instanceof HTMLVideoElement ? [source.videoWidth, source.videoHeight] : [source.width, source.height];
}

// `source` drawn on `canvas` at width x height over white (transparent pixels as a viewer shows them, as the
// CLI reads them); its RGBA pixels.
function draw(source, canvas, width, height) {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.imageSmoothingQuality = "high";
  context.drawImage(source, 0, 0, width, height);
  return context.getImageData(0, 0, width, height);
}

function toTensor(pixels) {
  const { data, width, height } = pixels;
  const n = width * height;
  const planes = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    planes[i] = data[4 * i] / 255;
    planes[n + i] = data[4 * i + 1] / 255;
    planes[2 * n + i] = data[4 * i + 2] / 255;
  }
  return new ort.Tensor("float32", planes, [1, 3, height, width]);
}

// The network's output blended with the input pixels by `strength`, as 8-bit RGBA.
function toPixels(planes, input, strength) {
  const { data, width, height } = input;
  const n = width * height;
  const image = new ImageData(width, height);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const before = data[4 * i + c] / 255;
      image.data[4 * i + c] = Math.round((before + strength * (planes[c * n + i] - before)) * 255); // clamped
    }
    image.data[4 * i + 3] = 255;
  }
  return image;
}

async function decode(file, what) {
  try {
    return await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new UserError(`“${file.name}” is not an image this browser can decode; choose a PNG, JPEG, WebP or GIF ${what}.`);
  }
}

function checkSides(width, height, what) {
  const least = state.config.min_side;
  if (Math.min(width, height) < least) {
    throw new UserError(`The ${what} is ${width}×${height} px at this size; the network needs at least ${least} px a side.`);
  }
}

async function stylize() {
  if (!state.content || !state.session) return;
  if (state.busy) {
    state.again = true; // a control moved during a run: run once more with the latest values
    return;
  }
  state.busy = true;
  try {
    const config = state.config;
    const [width, height] = fitted(...sourceSize(state.content), Number($("size").value));
    checkSides(width, height, "image");
    const started = performance.now();
    const input = draw(state.content, $("input"), width, height);
    const feeds = { [config.inputs[0]]: toTensor(input) };
    if (config.family === "arbitrary") {
      feeds.style = state.style;
      feeds.alpha = new ort.Tensor("float32", new Float32Array([Number($("alpha").value)]), [1]);
    }
    const ran = performance.now();
    const results = await state.session.run(feeds);
    const model = performance.now() - ran;
    const output = results[state.session.outputNames[0]].data;
    const canvas = $("output");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d").putImageData(toPixels(output, input, Number($("strength").value)), 0, 0);
    const done = performance.now();
    showTiming(width, height, model, done - started, done);
    clearError();
    $("download").disabled = false;
    state.frames += 1;
    document.body.dataset.frames = String(state.frames);
    document.body.dataset.state = "done";
  } catch (error) {
    showError(error);
  } finally {
    state.busy = false;
    if (state.again && !state.stream) {
      state.again = false;
      stylize();
    }
  }
}

function showTiming(width, height, model, frame, now) {
  state.recent = [...state.recent.filter((t) => now - t < 1000), now];
  const fps = state.stream ? state.recent.length : 1000 / frame;
  document.body.dataset.modelMs = model.toFixed(1);
  $("timing").textContent =
    `${width}×${height} px · network ${model.toFixed(0)} ms · frame ${frame.toFixed(0)} ms · ` +
    `${fps.toFixed(1)} frames per second (${document.body.dataset.backend})`;
}

async function loadStyle(source) {
  const [width, height] = fitted(source.width, source.height, state.config.style_size);
  checkSides(width, height, "style");
  state.style = toTensor(draw(source, $("style"), width, height));
}

async function onContentFile() {
  const file = $("content-file").files[0];
  if (!file) return;
  stopWebcam();
  try {
    state.content = await decode(file, "image");
  } catch (error) {
    showError(error);
    return;
  }
  await stylize();
}

async function onStyleFile() {
  const file = $("style-file").files[0];
  if (!file) return;
  try {
    await loadStyle(await decode(file, "style"));
  } catch (error) {
    showError(error);
    return;
  }
  await stylize();
}

async function startWebcam() {
  if (!navigator.mediaDevices?.getUserMedia) {
    showError(new UserError("This browser offers no webcam here (it needs https:// or localhost)."));
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    showError(new UserError(`The webcam could not be opened (${error.name}).`));
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  await video.play();
  state.content = video;
  $("webcam").textContent = "Stop webcam";
  const tick = async () => {
    if (!state.stream) return;
    await stylize();
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function stopWebcam() {
  if (!state.stream) return;
  state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  state.content = null;
  $("webcam").textContent = "Start webcam";
}

function save() {
  $("output").toBlob((blob) => {
    const link = document.createElement("a");
    link.download = "stylized.png";
    link.href = URL.createObjectURL(blob);
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }, "image/png");
}

// WebGPU where the browser has an adapter, else WASM; ?backend=wasm or ?backend=webgpu chooses.
async function createSession() {
  const wanted = new URLSearchParams(location.search).get("backend");
  let backends = ["wasm"];
  if (wanted === "wasm" || wanted === "webgpu") {
    backends = [wanted];
  } else if (navigator.gpu && (await navigator.gpu.requestAdapter().catch(() => null))) {
    backends = ["webgpu", "wasm"];
  }
  let failure;
  for (const backend of backends) {
    try {
      ort = await import(RUNTIMES[backend]);
      // Each build finds its .wasm beside itself (ort/). Threads need SharedArrayBuffer, which only a
      // cross-origin-isolated page has (COOP and COEP headers, which plain static hosts do not send).
      ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
      const session = await ort.InferenceSession.create("model.onnx", { executionProviders: [backend] });
      return [session, backend];
    } catch (error) {
      failure = error;
    }
  }
  throw failure;
}

function linkSlider(id) {
  const show = () => ($(`${id}-value`).textContent = Number($(id).value).toFixed(2));
  $(id).addEventListener("input", () => {
    show();
    stylize();
  });
  show();
}

async function main() {
  const config = await (await fetch("model.json")).json();
  state.config = config;
  for (const size of SIZES.filter((s) => s < config.size).concat([config.size])) {
    $("size").add(new Option(`${size} px`, String(size), false, size === config.size));
  }
  $("size").addEventListener("change", stylize);
  linkSlider("strength");
  const [session, backend] = await createSession();
  state.session = session;
  const label = backend === "webgpu" ? "WebGPU" : `WASM, ${ort.env.wasm.numThreads} thread(s)`;
  document.body.dataset.backend = label;
  if (config.family === "arbitrary") {
    $("alpha-control").hidden = false;
    $("style-control").hidden = false;
    $("style-view").hidden = false;
    linkSlider("alpha");
    const response = await fetch(config.style);
    await loadStyle(await createImageBitmap(await response.blob(), { colorSpaceConversion: "none" }));
  }
  $("content-file").disabled = false;
  $("webcam").disabled = false;
  $("content-file").addEventListener("change", onContentFile);
  $("style-file").addEventListener("change", onStyleFile);
  $("webcam").addEventListener("click", () => (state.stream ? stopWebcam() : startWebcam()));
  $("download").addEventListener("click", save);
  setStatus(`Ready (${label}, onnxruntime-web ${config.onnxruntime_web}): choose an image or start the webcam.`);
  document.body.dataset.state = "ready";
}

main().catch((error) => {
  setStatus("The stylizer could not start.");
  showError(error);
});
