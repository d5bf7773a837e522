// frame_worker.js — fetches decoded frames off the page's main thread: a
// 512×512 16-bit frame is half a megabyte whose transfer costs the thread
// that reads it tens of ms on a busy machine, time the main thread needs
// for drawing.  The frame comes back to the page with its buffer
// transferred, not copied.
//   in:  {token} once, then {id, sop, n}
//   out: {id, frame} or {id, error, status}
import { frame, useToken } from './api.js';

onmessage = async ({ data }) => {
  if (data.token !== undefined) { useToken(data.token); return; }
  const { id, sop, n } = data;
  try {
    const f = await frame(sop, n);
    postMessage({ id, frame: f }, [f.data.buffer]);
  } catch (e) {
    postMessage({ id, error: e.message, status: e.status || 0 });
  }
};
