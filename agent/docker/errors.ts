// dockerode rejects with an error carrying the Engine API's status code and JSON body; these read
// them the same way everywhere (404 = already gone, the API's own message for the user).
interface DockerApiError {
  statusCode?: number;
  json?: { message?: string };
  message?: string;
}

export const dockerStatusOf = (err: unknown): number | undefined => (err as DockerApiError)?.statusCode;

export const dockerMessageOf = (err: unknown): string =>
  ((err as DockerApiError)?.json?.message ?? (err as Error)?.message ?? String(err)).trim();

/** A clean-up's "already done": the container or image is gone (404), being removed (409) or already stopped (304). */
export const alreadyGone = (err: unknown): boolean => [304, 404, 409].includes(dockerStatusOf(err) ?? 0);
