// Tests that need root (chown to other users, mknod, trusted.* xattrs, mounts) pass this as their
// options: as another user they are skipped with a message saying why, instead of failing.
export const ROOT_ONLY: { skip?: string } =
  process.geteuid?.() === 0 ? {} : { skip: 'needs root: layers carry other owners, device nodes and trusted.* xattrs, and some tests mount' };
