// Who is signed in: {project (null: every project), role, auth}, from the server.
export const session = { project: null, role: null, auth: false };

/** Whether the signed-in token may change runs (abort, later edit notes and tags). */
export function canWrite() {
  return session.role === "write" || session.role === "admin";
}
