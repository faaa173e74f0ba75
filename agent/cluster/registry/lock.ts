// Pushes to the cluster's registry and its garbage collection never overlap on this manager: GC
// stops the berth-managed registry for a few seconds, and a push meanwhile would fail a deploy.
import { SerialQueue } from '../../../shared/util/index.js';

export const registryLock = new SerialQueue();
