/*
 * backends/base/mountinfo.h - reading the mount table (private).
 *
 * omni-exec finds the omnifs mount around a directory (runtime.c), and
 * omnifs checks a mount point before mounting on it (fs/mountpoint.c):
 * both walk /proc/self/mountinfo with this one reader. Each line is
 *
 *	ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - TYPE SOURCE SUPER
 *
 * The mount point and the source have their octal escapes (\040 for a
 * space, \134 for a backslash) decoded. Mounts come in the table's order,
 * so of several on one path the last is the one on top.
 */
#ifndef OMNI_BASE_MOUNTINFO_H
#define OMNI_BASE_MOUNTINFO_H

/* One line of the table; the strings live until the callback returns. */
struct omni__mount {
	const char *point;  /* absolute path, decoded */
	const char *fstype; /* "ext4", "fuse.omnifs", ... */
	const char *source; /* decoded; "omnifs:<project>" for ours */
	const char *super;  /* super block options: "rw,user_id=0,..." */
};

typedef int (*omni__mount_cb)(const struct omni__mount *m, void *payload);

/*
 * Call cb for every mount of /proc/self/mountinfo, in order, until it
 * returns non-zero; that value is returned, else 0. Lines that do not
 * parse are skipped. -errno with a message when the table cannot be read.
 */
int omni__mountinfo_each(omni__mount_cb cb, void *payload);

/*
 * omni_session_find() for the current directory, from getcwd(3) without
 * realpath(3): no lookup in the mount (runtime.c). -errno with a message
 * when the directory has no path (removed), -ENOENT when it is not in an
 * omnifs mount.
 */
int omni__session_find_cwd(char *project, size_t project_size, char *mountpoint,
                           size_t mountpoint_size, char *rel, size_t rel_size);

#endif
