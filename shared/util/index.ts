// Small helpers every part of berth uses, in one place so nothing writes its own copy:
// atomic file writes and 0600 secret files, an abortable sleep, a serial queue, one-line errors.
export * from './async.js';
export * from './best-effort.js';
export * from './errors.js';
export * from './files.js';
