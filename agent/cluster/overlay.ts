// The overlay data path (VXLAN, 4789/udp) cannot be probed with a TCP connect: after a join, a
// short-lived listener container on an attachable overlay network on one node must answer a
// short-lived client container on the other, both ways. Everything here is labelled
// berth.cluster-check (not berth.managed: the reconciler owns those) and removed by `cleanup`.
import type Docker from 'dockerode';
import { engineMessage, SwarmError } from './swarm.js';

export const CHECK_LABEL = 'berth.cluster-check';
/** The port the listener serves on inside the overlay network (never published on the host). */
export const CHECK_PORT = 7999;

const labels = (server: string) => ({ [CHECK_LABEL]: 'true', 'berth.server': server });

/** Create the attachable overlay network (manager only) unless it exists. */
export async function ensureCheckNetwork(docker: Docker, network: string): Promise<void> {
  const existing = await docker.listNetworks({ filters: { name: [network], label: [`${CHECK_LABEL}=true`] } });
  if (existing.some((n) => n.Name === network)) return;
  try {
    await docker.createNetwork({ Name: network, Driver: 'overlay', Attachable: true, Labels: { [CHECK_LABEL]: 'true' } });
  } catch (err) {
    throw new SwarmError(`could not create the overlay network ${network}: ${engineMessage(err)}`);
  }
}

/** Pull `image` when this engine does not have it (bounded); `what` names it in the error. */
export async function ensureImage(docker: Docker, image: string, what = 'the check image'): Promise<void> {
  try {
    await docker.getImage(image).inspect();
    return;
  } catch {
    // not here: pull it
  }
  try {
    const stream = await docker.pull(image);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('pull took longer than 120 s')), 120_000);
      docker.modem.followProgress(stream, (err) => (clearTimeout(timer), err ? reject(err) : resolve()));
    });
  } catch (err) {
    throw new SwarmError(`${what} ${image} is not on this server and could not be pulled: ${engineMessage(err)}`);
  }
}

/** Start a listener answering `word` for `seconds`; resolves with its address on the overlay network. */
export async function serve(docker: Docker, opts: { server: string; network: string; image: string; word: string; seconds: number }): Promise<string> {
  await ensureImage(docker, opts.image);
  const script = `mkdir -p /w && echo ${opts.word} > /w/index.html && httpd -p ${CHECK_PORT} -h /w && sleep ${opts.seconds}`;
  try {
    const c = await docker.createContainer({
      name: `berth-cluster-check-${opts.word}-serve`,
      Image: opts.image,
      Cmd: ['sh', '-c', script],
      Labels: labels(opts.server),
      HostConfig: { NetworkMode: opts.network, AutoRemove: true },
    });
    await c.start();
    for (let i = 0; i < 50; i++) {
      const info = await c.inspect();
      const ip = info.NetworkSettings?.Networks?.[opts.network]?.IPAddress;
      if (ip) return ip;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('it got no address on the overlay network');
  } catch (err) {
    throw new SwarmError(`could not start the overlay check listener: ${engineMessage(err)}`);
  }
}

/** Does a container on this node get `word` from `address` over the overlay network within `timeoutMs`? */
export async function reach(docker: Docker, opts: { server: string; network: string; image: string; address: string; word: string; timeoutMs: number }): Promise<boolean> {
  await ensureImage(docker, opts.image);
  const tries = Math.max(1, Math.floor(opts.timeoutMs / 1500));
  // busybox nc (its wget crashes on non-loopback addresses in libc-less images); bounded tries.
  const script =
    `i=0; while [ $i -lt ${tries} ]; do i=$((i+1)); ` +
    `if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 ${opts.address} ${CHECK_PORT} | grep -q ${opts.word}; then echo reached; exit 0; fi; sleep 0.5; done; exit 1`;
  let container: Docker.Container | undefined;
  try {
    container = await docker.createContainer({
      name: `berth-cluster-check-${opts.word}-reach-${Date.now().toString(36)}`,
      Image: opts.image,
      Cmd: ['sh', '-c', script],
      Labels: labels(opts.server),
      HostConfig: { NetworkMode: opts.network },
    });
    await container.start();
    const wait = container.wait() as Promise<{ StatusCode: number }>;
    const timeout = new Promise<{ StatusCode: number }>((resolve) => setTimeout(() => resolve({ StatusCode: -1 }), opts.timeoutMs + 5_000).unref());
    const { StatusCode } = await Promise.race([wait, timeout]);
    return StatusCode === 0;
  } catch (err) {
    throw new SwarmError(`could not run the overlay check: ${engineMessage(err)}`);
  } finally {
    await container?.remove({ force: true }).catch(() => {});
  }
}

/** Remove every check container on this engine. */
export async function cleanup(docker: Docker): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${CHECK_LABEL}=true`] } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
}
