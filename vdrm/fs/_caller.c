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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <string.h>
#include <linux/fuse.h>

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

typedef void (*process_buf_fn)(struct fuse_session *, const struct fuse_buf *);

static process_buf_fn real_process_buf;
static struct fuse_in_header current;
static unsigned long long seen;

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
    return PyModule_Create(&caller_module);
}
