// util.js — small DOM and formatting helpers shared by the panels.

// el('div.cls#id', {attr: v, onclick: f}, child...)
export function el(spec, attrs, ...children) {
  const m = spec.match(/^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i);
  const node = document.createElement(m[1] || 'div');
  for (const part of (m[2] || '').match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') node.classList.add(part.slice(1)); else node.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'class') node.classList.add(...String(v).split(/\s+/).filter(Boolean));
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// A DICOM person name (PS3.5 6.2: alphabetic=ideographic=phonetic groups,
// components split by ^) as people write it: "张三 (Zhang San)".
export function personName(pn) {
  if (!pn) return '';
  const [alpha = '', ideo = ''] = String(pn).split('=');
  const a = alpha.split('^').filter(Boolean).join(' ');
  const i = ideo.split('^').filter(Boolean).join('');
  if (i && a) return `${i} (${a})`;
  return i || a;
}

// "20261123" -> "2026-11-23"
export function dicomDate(d) {
  return d && /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : (d || '');
}

// Time left until due, "-" prefixed when overdue: "1 h 05 min", "4:07".
export function countdown(ms) {
  const neg = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const t = h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m}:${String(sec).padStart(2, '0')}`;
  return neg ? `overdue ${t}` : t;
}

export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

// A status line at the bottom; errors stay until the next message.
export function status(msg, isError = false) {
  const s = document.getElementById('status');
  if (!s) return;
  s.textContent = msg;
  s.classList.toggle('error', !!isError);
}
