// Atomic file writes and one-line errors are shared with the control plane: shared/files.ts.
export * from '../../shared/files.js';
