// The dashboard's only client code and style, kept as strings so `tsc` output is the whole release
// (nothing to copy). Served at a content-hashed path with a long cache life; the CSP allows
// scripts from 'self' only, so no page carries an inline script.
import { createHash } from 'node:crypto';

const SCRIPT = `'use strict';
// Live parts of the dashboard: a deployment's status, phase and log follow its event stream.
(function () {
  function follow(box) {
    var url = box.getAttribute('data-events');
    var log = box.querySelector('[role="log"]');
    var status = box.querySelector('[data-status]');
    var reason = box.querySelector('[data-reason]');
    var phases = box.querySelector('[data-phases]');
    var id = box.getAttribute('data-deployment');
    var seen = {};
    if (phases) for (var j = 0; j < phases.children.length; j++) seen[phases.children[j].textContent] = true;
    var ended = false;
    function setStatus(d) {
      var badges = document.querySelectorAll('[data-dep-row="' + id + '"] [data-status]');
      var all = status ? [status] : [];
      for (var k = 0; k < badges.length; k++) all.push(badges[k]);
      // An apps-list row shows the app's status: deploying while it runs, then serving or failed.
      var shown = box.hasAttribute('data-app-row') ? ({ done: 'serving', failed: 'failed' })[d.status] || (ended ? null : 'deploying') : d.status;
      if (shown) all.forEach(function (b) { b.textContent = shown; b.className = 'status s-' + shown; });
      if (reason) { reason.textContent = d.reason || ''; reason.hidden = !d.reason; }
      if (phases && !seen[d.status]) {
        seen[d.status] = true;
        var li = document.createElement('li');
        li.textContent = d.status;
        phases.appendChild(li);
      }
      box.setAttribute('data-live-status', d.status);
    }
    var es = new EventSource(url);
    es.addEventListener('deployment', function (e) { setStatus(JSON.parse(e.data)); });
    es.addEventListener('log', function (e) {
      var line = JSON.parse(e.data);
      if (!log) return;
      var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(document.createTextNode(line.text + '\\n'));
      if (stick) log.scrollTop = log.scrollHeight;
    });
    es.addEventListener('end', function (e) {
      ended = true;
      setStatus(JSON.parse(e.data));
      es.close();
      box.setAttribute('data-ended', 'true');
    });
  }
  // A process's runtime output: \`line\` events, then \`end\` (with \`error\` when the agent could not serve it).
  function runtime(box) {
    var log = box.querySelector('[role="log"]');
    var reason = box.querySelector('[data-reason]');
    var es = new EventSource(box.getAttribute('data-runtime-events'));
    es.addEventListener('line', function (e) {
      var l = JSON.parse(e.data);
      log.appendChild(document.createTextNode('[' + l.process + (l.replica ? '.' + l.replica : '') + '] ' + l.text + '\\n'));
    });
    es.addEventListener('end', function (e) {
      var d = JSON.parse(e.data);
      if (d.error && reason) { reason.textContent = d.error; reason.hidden = false; }
      es.close();
      box.setAttribute('data-ended', 'true');
    });
    es.onerror = function () {
      if (reason && es.readyState === 2) { reason.textContent = 'The log stream is not available (is the server offline?).'; reason.hidden = false; }
    };
  }
  var rt = document.querySelectorAll('[data-runtime-events]');
  for (var r = 0; r < rt.length; r++) runtime(rt[r]);
  var boxes = document.querySelectorAll('[data-events]');
  for (var i = 0; i < boxes.length; i++) follow(boxes[i]);
  // Buttons that ask before acting (rollback, remove, delete).
  document.addEventListener('submit', function (e) {
    var msg = e.target && e.target.getAttribute && e.target.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
})();
`;

const STYLE = `*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,sans-serif;color:#1b1f24;background:#f6f7f9}
header{display:flex;flex-wrap:wrap;gap:.5rem 1.25rem;align-items:center;padding:.6rem 1rem;background:#1b1f24;color:#fff}
header a{color:#fff;text-decoration:none}header a:hover,header a:focus{text-decoration:underline}
header .brand{font-weight:700;margin-right:auto}
header form{margin:0}
main{max-width:1100px;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.25rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
table{width:100%;border-collapse:collapse;background:#fff;font-size:.95rem}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top;overflow-wrap:anywhere}
th{font-weight:600;background:#eef0f3;overflow-wrap:normal}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:1rem;margin:0 0 1rem}
.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end}
label{display:flex;flex-direction:column;font-size:.85rem;gap:.15rem}
input,select,textarea{font:inherit;padding:.35rem .45rem;border:1px solid #b8bec6;border-radius:4px;min-width:0}
button{white-space:nowrap;font:inherit;padding:.4rem .8rem;border-radius:4px;border:1px solid #1b1f24;background:#1b1f24;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1b1f24}button.danger{background:#b42318;border-color:#b42318}
button:focus-visible,a:focus-visible,input:focus-visible{outline:3px solid #5b9dff;outline-offset:1px}
.status{display:inline-block;padding:0 .45rem;border-radius:999px;background:#e3e6ea;font-size:.85rem;overflow-wrap:normal;white-space:nowrap}
.s-done,.s-serving{background:#d1fadf;color:#05603a}.s-failed{background:#fee4e2;color:#912018}
.s-cancelled,.s-superseded{background:#eef0f3;color:#555}
.s-queued,.s-fetching,.s-building,.s-releasing,.s-starting,.s-health_checking,.s-switching,.s-deploying{background:#fef0c7;color:#93370d}
pre[role=log]{background:#0d1117;color:#d6dde6;padding:.75rem;border-radius:6px;max-height:28rem;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85rem}
.phases{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;padding:0;margin:.5rem 0;font-size:.85rem}
.phases li::before{content:"\\2192 ";color:#888}
.error{background:#fee4e2;color:#912018;padding:.5rem .75rem;border-radius:4px}
.notice{background:#eef4ff;padding:.5rem .75rem;border-radius:4px}
.muted{color:#5c6470;font-size:.85rem}code{font-size:.9em;overflow-wrap:anywhere}
.inline{display:inline}
.low{color:#912018}
.commit-msg{overflow-wrap:anywhere}
.s-healthy{background:#d1fadf;color:#05603a}.s-degraded{background:#fef0c7;color:#93370d}.s-down{background:#fee4e2;color:#912018}
@media (max-width:640px){table,thead,tbody,tr,th,td{display:block}thead{display:none}tr{border-bottom:1px solid #e3e6ea;padding:.4rem 0}td{border:0;padding:.15rem .5rem}}
`;

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 12);

export interface Asset {
  path: string;
  body: string;
  type: string;
}

export const ASSET_PREFIX = '/ui/static/';
export const SCRIPT_ASSET: Asset = { path: `${ASSET_PREFIX}app-${hash(SCRIPT)}.js`, body: SCRIPT, type: 'text/javascript; charset=utf-8' };
export const STYLE_ASSET: Asset = { path: `${ASSET_PREFIX}app-${hash(STYLE)}.css`, body: STYLE, type: 'text/css; charset=utf-8' };
export const ASSETS: readonly Asset[] = [SCRIPT_ASSET, STYLE_ASSET];
