/*
 * vdrm.fs._caller: which thread sent the FUSE request being handled.
 *
 * pyfuse3 passes a RequestContext (pid, uid, gid) to lookup, open, poll and a few more
 * handlers, but not to read, write or flush. Every FUSE request carries its sender in its
 * header all the same: struct fuse_in_header (include/uapi/linux/fuse.h) names the
 * calling thread (its pid in the daemon's pid namespace, i.e. the tid), uid and gid.
 *
 * This module defines fuse_session_process_buf(), the libfuse call pyfuse3 makes for each
 * request it has read from /dev/fuse. Loaded with RTLD_GLOBAL before pyfuse3 is imported,
 * its definition is the one pyfuse3 binds to (global scope is searched before a library's
 * own dependencies). It copies the request's header, then calls libfuse's own function.
 *
 * Why that is exact: pyfuse3 calls fuse_session_process_buf() and then, in the same trio
 * task and before any checkpoint, starts the handler's coroutine. A handler that reads
 * current() before its first await therefore reads its own request's header: no other
 * request can have been processed in between. vdrm.fs.operations does exactly that.
 *
 * A request whose header is not in memory (a spliced buffer, FUSE_BUF_IS_FD) reads as
 * pid 0, "unknown", and vdrm then treats the open file as having one shared reader.
 *
 * The other way, it defines fuse_reply_open(), which pyfuse3 calls to answer OPEN and
 * OPENDIR. pyfuse3 3.5's FileInfo can set direct_io and keep_cache, but not two flags of
 * struct fuse_file_info that the kernel honours (FOPEN_NOFLUSH, FOPEN_CACHE_DIR):
 *   noflush        close(2) of the file sends no FLUSH (a proc or sys file needs none;
 *                  only a DRM node's close is a hook vdrm uses);
 *   cache_readdir  the kernel keeps the directory's listing and serves readdir(3) from
 *                  it until vdrm invalidates the directory's inode.
 * A handler calls open_flags(fh, flags) after its last await: pyfuse3 then copies the
 * handler's FileInfo and replies with no checkpoint in between, so the pending flags
 * are the ones for that reply. They are applied only to a reply whose fh matches, and
 * used once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>
#include <linux/fuse.h>

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

typedef void (*process_buf_fn)(struct fuse_session *, const struct fuse_buf *);

typedef int (*reply_open_fn)(fuse_req_t, const struct fuse_file_info *);

static process_buf_fn real_process_buf;
static reply_open_fn real_reply_open;
static struct fuse_in_header current;
static unsigned long long seen;

#define OPEN_NOFLUSH 1
#define OPEN_CACHE_READDIR 2
#define OPEN_KEEP_CACHE 4

static uint64_t pending_fh;
static unsigned int pending_flags;

__attribute__((visibility("default")))
void fuse_session_process_buf(struct fuse_session *se, const struct fuse_buf *buf)
{
    if (!(buf->flags & FUSE_BUF_IS_FD) && buf->mem != NULL && buf->size >= sizeof(current)) {
        memcpy(&current, buf->mem, sizeof(current));
        seen++;
    } else {
        memset(&current, 0, sizeof(current));
    }
    real_process_buf(se, buf);
}

__attribute__((visibility("default")))
int fuse_reply_open(fuse_req_t req, const struct fuse_file_info *f)
{
    struct fuse_file_info fi;

    if (pending_flags == 0 || f == NULL || f->fh != pending_fh)
        return real_reply_open(req, f);
    fi = *f;
    if (pending_flags & OPEN_NOFLUSH)
        fi.noflush = 1;
    if (pending_flags & OPEN_CACHE_READDIR)
        fi.cache_readdir = 1;
    if (pending_flags & OPEN_KEEP_CACHE)
        fi.keep_cache = 1;
    pending_flags = 0;
    return real_reply_open(req, &fi);
}

static PyObject *caller_open_flags(PyObject *self, PyObject *args)
{
    unsigned long long fh;
    unsigned int flags;

    if (!PyArg_ParseTuple(args, "KI", &fh, &flags))
        return NULL;
    pending_fh = fh;
    pending_flags = flags;
    Py_RETURN_NONE;
}

static PyObject *caller_current(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("(IIKKIII)", current.opcode, current.len,
                         (unsigned long long)current.unique, (unsigned long long)current.nodeid,
                         current.uid, current.gid, current.pid);
}

static PyObject *caller_seen(PyObject *self, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(seen);
}

static PyMethodDef caller_methods[] = {
    {"current", caller_current, METH_NOARGS,
     "current() -> (opcode, len, unique, nodeid, uid, gid, pid) of the request being handled"},
    {"seen", caller_seen, METH_NOARGS,
     "seen() -> how many request headers this module has read (0: pyfuse3 does not call it)"},
    {"open_flags", caller_open_flags, METH_VARARGS,
     "open_flags(fh, flags): the next OPEN/OPENDIR reply for fh also sets these "
     "(1 noflush, 2 cache_readdir, 4 keep_cache)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef caller_module = {
    PyModuleDef_HEAD_INIT, "_caller",
    "The sender of the FUSE request being handled (see vdrm/fs/caller.py).", -1, caller_methods,
};

PyMODINIT_FUNC PyInit__caller(void)
{
    /* libfuse's own definition, looked up in libfuse (the one pyfuse3 loads: same soname) */
    void *libfuse = dlopen("libfuse3.so.3", RTLD_NOW | RTLD_LOCAL);
    if (libfuse != NULL)
        real_process_buf = (process_buf_fn)dlsym(libfuse, "fuse_session_process_buf");
    if (real_process_buf == NULL) {
        const char *why = dlerror();
        PyErr_Format(PyExc_ImportError, "vdrm.fs._caller: libfuse3's fuse_session_process_buf not found: %s",
                     why != NULL ? why : "no such symbol");
        return NULL;
    }
    real_reply_open = libfuse != NULL ? (reply_open_fn)dlsym(libfuse, "fuse_reply_open") : NULL;
    if (real_reply_open == NULL) {
        PyErr_SetString(PyExc_ImportError, "vdrm.fs._caller: libfuse3's fuse_reply_open not found");
        return NULL;
    }
    return PyModule_Create(&caller_module);
}
