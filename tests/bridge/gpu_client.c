/*
 * A GPU client the way real programs are written: find the GPU, open its render node,
 * check it is a DRM character device, and talk ioctl(2) with the kernel's structs.
 *
 * Built twice by tests/bridge/test_programs.py:
 *   -DWITH_LIBDRM  against libdrm (pkg-config libdrm): drmGetDevices2, drmGetVersion, drmIoctl;
 *   -static        raw ioctl(2) only, no libdrm, every struct declared here.
 * The Panfrost structs and numbers are declared here from include/uapi/drm/panfrost_drm.h
 * (and drm.h for the core ones), not taken from a header, as an application may do.
 *
 * usage: gpu_client basic|threads|fork|wait-forever
 * Prints "key=value" lines; exit status 0 only if every step worked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_LIBDRM
#include <xf86drm.h>
#endif

/* asm-generic/ioctl.h */
#define IOC(dir, nr, size) (((unsigned long)(dir) << 30) | ((unsigned long)(size) << 16) | ('d' << 8) | (nr))
#define IOW(nr, type) IOC(1, nr, sizeof(type))
#define IOWR(nr, type) IOC(3, nr, sizeof(type))
#define COMMAND_BASE 0x40

/* drm.h */
struct version { int32_t major, minor, patchlevel; uint64_t name_len, name, date_len, date, desc_len, desc; };
/* panfrost_drm.h */
struct submit { uint64_t jc, in_syncs; uint32_t in_sync_count, out_sync; uint64_t bo_handles;
                uint32_t bo_handle_count, requirements, jm_ctx_handle, pad; };
struct wait_bo { uint32_t handle, pad; int64_t timeout_ns; };
struct create_bo { uint32_t size, flags, handle, pad; uint64_t offset; };
struct get_param { uint32_t param, pad; uint64_t value; };
struct get_bo_offset { uint32_t handle, pad; uint64_t offset; };
/* vdrm's own, in the driver's range (README: "Running real programs") */
struct vdrm_fault { uint64_t addr; uint32_t exception, access, source_id, as, populated, pad; };

#define IOCTL_VERSION IOWR(0x00, struct version)
#define IOCTL_SUBMIT IOW(COMMAND_BASE + 0x00, struct submit)
#define IOCTL_WAIT_BO IOW(COMMAND_BASE + 0x01, struct wait_bo)
#define IOCTL_CREATE_BO IOWR(COMMAND_BASE + 0x02, struct create_bo)
#define IOCTL_GET_PARAM IOWR(COMMAND_BASE + 0x04, struct get_param)
#define IOCTL_GET_BO_OFFSET IOWR(COMMAND_BASE + 0x05, struct get_bo_offset)
#define IOCTL_VDRM_FAULT IOWR(COMMAND_BASE + 0x5e, struct vdrm_fault)
#define BO_NOEXEC 1
#define BO_HEAP 2
#define PARAM_GPU_PROD_ID 0
#define JD_REQ_FS 1

static int failures;

static int call(int fd, unsigned long cmd, void *arg)
{
#ifdef WITH_LIBDRM
    return drmIoctl(fd, cmd, arg); /* restarts on EINTR/EAGAIN, as Mesa's calls */
#else
    int ret;
    do
        ret = ioctl(fd, cmd, arg);
    while (ret == -1 && (errno == EINTR || errno == EAGAIN));
    return ret;
#endif
}

static void check(int ok, const char *what)
{
    if (!ok) {
        printf("FAILED=%s errno=%d\n", what, errno);
        failures++;
    }
}

static const char *find_render_node(void)
{
#ifdef WITH_LIBDRM
    static char path[256];
    drmDevicePtr devices[8];
    int n = drmGetDevices2(0, devices, 8);
    printf("devices=%d\n", n);
    for (int i = 0; i < n; i++) {
        if (devices[i]->bustype == DRM_BUS_PLATFORM && (devices[i]->available_nodes & (1 << DRM_NODE_RENDER))) {
            printf("fullname=%s\n", devices[i]->businfo.platform->fullname);
            snprintf(path, sizeof(path), "%s", devices[i]->nodes[DRM_NODE_RENDER]);
        }
    }
    drmFreeDevices(devices, n > 0 ? n : 0);
    return path[0] ? path : NULL;
#else
    return "/dev/dri/renderD128";
#endif
}

static void print_version(int fd)
{
#ifdef WITH_LIBDRM
    drmVersionPtr v = drmGetVersion(fd);
    check(v != NULL, "drmGetVersion");
    if (v) {
        printf("driver=%s\nversion=%d.%d.%d\n", v->name, v->version_major, v->version_minor, v->version_patchlevel);
        drmFreeVersion(v);
    }
#else
    char name[64] = {0}, date[64] = {0}, desc[128] = {0};
    struct version v = {0};
    check(call(fd, IOCTL_VERSION, &v) == 0, "VERSION lengths");
    v.name = (uintptr_t)name; v.name_len = sizeof(name) - 1;
    v.date = (uintptr_t)date; v.date_len = sizeof(date) - 1;
    v.desc = (uintptr_t)desc; v.desc_len = sizeof(desc) - 1;
    check(call(fd, IOCTL_VERSION, &v) == 0, "VERSION");
    printf("driver=%s\nversion=%d.%d.%d\n", name, v.major, v.minor, v.patchlevel);
#endif
}

static uint64_t prod_id(int fd)
{
    struct get_param p = {.param = PARAM_GPU_PROD_ID};
    check(call(fd, IOCTL_GET_PARAM, &p) == 0, "GET_PARAM");
    return p.value;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void print_fdinfo(int fd)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    check(f != NULL, "fdinfo");
    while (f && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "drm-total-memory:", 17) || !strncmp(line, "drm-resident-memory:", 20) ||
            !strncmp(line, "drm-client-id:", 14) || !strncmp(line, "drm-driver:", 11)) {
            char *colon = strchr(line, ':');
            *colon = '\0';
            char *value = colon + 1;
            while (*value == '\t' || *value == ' ')
                value++;
            printf("%s=%s", line, value);
        }
    }
    if (f)
        fclose(f);
}

static int open_node(void)
{
    const char *node = find_render_node();
    check(node != NULL, "find the render node");
    if (!node)
        exit(1);
    int fd = open(node, O_RDWR | O_CLOEXEC);
    check(fd >= 0, "open");
    struct stat st;
    check(fstat(fd, &st) == 0, "fstat");
    printf("node=%s\nchr=%d\nrdev=%u:%u\n", node, S_ISCHR(st.st_mode), major(st.st_rdev), minor(st.st_rdev));
    return fd;
}

static int basic(void)
{
    int fd = open_node();
    print_version(fd);
    printf("prod_id=0x%llx\n", (unsigned long long)prod_id(fd));

    struct create_bo heap = {.size = 8 << 20, .flags = BO_HEAP | BO_NOEXEC};
    check(call(fd, IOCTL_CREATE_BO, &heap) == 0, "CREATE_BO heap");
    printf("heap_offset=0x%llx\n", (unsigned long long)heap.offset);
    struct create_bo bo = {.size = 1 << 20};
    check(call(fd, IOCTL_CREATE_BO, &bo) == 0, "CREATE_BO");

    struct vdrm_fault fault = {.addr = heap.offset, .exception = 0xC3, .access = 3};
    check(call(fd, IOCTL_VDRM_FAULT, &fault) == 0, "FAULT");
    printf("fault_populated=%u\n", fault.populated);

    uint32_t handles[] = {bo.handle};
    struct submit job = {.jc = 0x1000, .bo_handles = (uintptr_t)handles, .bo_handle_count = 1,
                         .requirements = JD_REQ_FS};
    check(call(fd, IOCTL_SUBMIT, &job) == 0, "SUBMIT");
    struct wait_bo wait = {.handle = bo.handle, .timeout_ns = now_ns() + 5000000000LL};
    check(call(fd, IOCTL_WAIT_BO, &wait) == 0, "WAIT_BO");
    struct wait_bo poll = {.handle = bo.handle, .timeout_ns = 0};
    printf("wait_after_done=%d\n", call(fd, IOCTL_WAIT_BO, &poll));

    /* bad input: the kernel's errnos */
    struct create_bo zero = {.size = 0};
    int ret = call(fd, IOCTL_CREATE_BO, &zero);
    printf("zero_size=%d errno=%d\n", ret, ret ? errno : 0);
    ret = call(fd, IOCTL_GET_PARAM, (void *)8);
    printf("bad_pointer=%d errno=%d\n", ret, ret ? errno : 0);

    print_fdinfo(fd);
    close(fd);
    return failures ? 1 : 0;
}

static int thread_fd;
static void *thread_body(void *arg)
{
    for (int i = 0; i < 50; i++)
        if (prod_id(thread_fd) != 0x7402)
            failures++;
    return arg;
}

static int threads(void)
{
    thread_fd = open_node();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_body, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("threads_ok=%d\n", failures == 0);
    return failures ? 1 : 0;
}

static int forked(void)
{
    int fd = open_node();
    pid_t child = fork();
    if (child == 0) { /* the inherited fd is the same client: its BO is the parent's */
        struct create_bo bo = {.size = 4096};
        int ok = call(fd, IOCTL_CREATE_BO, &bo) == 0 && prod_id(fd) == 0x7402;
        _exit(ok && bo.handle == 1 ? 0 : 1);
    }
    int status;
    waitpid(child, &status, 0);
    printf("child_status=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    struct get_bo_offset off = {.handle = 1};
    check(call(fd, IOCTL_GET_BO_OFFSET, &off) == 0, "GET_BO_OFFSET of the child's BO");
    printf("child_bo_offset=0x%llx\n", (unsigned long long)off.offset);
    /* a child that opens its own: a new client */
    child = fork();
    if (child == 0) {
        int own = open("/dev/dri/renderD128", O_RDWR);
        struct get_bo_offset none = {.handle = 1};
        _exit(call(own, IOCTL_GET_BO_OFFSET, &none) == -1 && errno == ENOENT ? 0 : 1);
    }
    waitpid(child, &status, 0);
    printf("own_open_status=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return failures ? 1 : 0;
}

/* Blocks in WAIT_BO (deadline in 120 s) on a BO made busy for 3 s by a job submitted
 * through the text protocol on the same fd (a binary SUBMIT's job is 1 ms long). */
static int wait_forever(void)
{
    int fd = open_node();
    struct create_bo bo = {.size = 4096};
    check(call(fd, IOCTL_CREATE_BO, &bo) == 0, "CREATE_BO");
    /* jobs time out after the kernel's 500 ms: ten 400 ms jobs keep the BO busy for 4 s */
    char line[] = "SUBMIT bo_handles=1 duration=400ms\nSUBMIT bo_handles=1 duration=400ms\n"
                  "SUBMIT bo_handles=1 duration=400ms\nSUBMIT bo_handles=1 duration=400ms\n"
                  "SUBMIT bo_handles=1 duration=400ms\nSUBMIT bo_handles=1 duration=400ms\n"
                  "SUBMIT bo_handles=1 duration=400ms\nSUBMIT bo_handles=1 duration=400ms\n"
                  "SUBMIT bo_handles=1 duration=400ms\nSUBMIT bo_handles=1 duration=400ms\n";
    char reply[128];
    check(write(fd, line, strlen(line)) == (ssize_t)strlen(line), "SUBMIT (text)");
    ssize_t n = read(fd, reply, sizeof(reply) - 1);
    reply[n > 0 ? n : 0] = '\0';
    printf("submitted=%s", reply);
    printf("waiting=1\n");
    fflush(stdout);
    struct wait_bo wait = {.handle = bo.handle, .timeout_ns = now_ns() + 120000000000LL};
    call(fd, IOCTL_WAIT_BO, &wait);
    printf("woke=1\n");
    return 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "basic";
    if (!strcmp(mode, "basic"))
        return basic();
    if (!strcmp(mode, "threads"))
        return threads();
    if (!strcmp(mode, "fork"))
        return forked();
    if (!strcmp(mode, "wait-forever"))
        return wait_forever();
    fprintf(stderr, "usage: %s basic|threads|fork|wait-forever\n", argv[0]);
    return 2;
}
