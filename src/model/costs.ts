/**
 * Per-connection costs measured on the reference machine (see
 * docs/measurements.md for the method and figures). The model uses them to
 * turn available memory into a number of connections.
 */

/** Kernel memory of one idle established TCP socket, in bytes (slab: tcp sock, socket inode, file, dentry, epoll item). */
export const KERNEL_BYTES_PER_SOCKET = 4800;
