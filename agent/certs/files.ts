// Atomic file writes and one-line errors are shared with the control plane: shared/util/.
export * from '../../shared/util/index.js';
