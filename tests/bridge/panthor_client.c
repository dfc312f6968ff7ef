/*
 * A Panthor client with raw ioctl(2), as a Vulkan driver's kernel layer talks to the GPU:
 * open the render node given on the command line, check it is a DRM character device,
 * ask DRM_IOCTL_VERSION, DEV_QUERY GPU_INFO (size first, then the struct), create a VM,
 * a BO bound into it, a group and a tiler heap, submit a job, and print its fdinfo.
 * Structs and numbers are declared here from include/uapi/drm/panthor_drm.h (and drm.h),
 * not taken from a header. Built by tests/bridge/test_panthor_programs.py.
 *
 * usage: panthor_client /dev/dri/renderD129
 * Prints "key=value" lines; exit status 0 only if every step worked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define IOC(dir, nr, size) (((unsigned long)(dir) << 30) | ((unsigned long)(size) << 16) | ('d' << 8) | (nr))
#define IOWR(nr, type) IOC(3, nr, sizeof(type))
#define COMMAND_BASE 0x40

struct version { int32_t major, minor, patchlevel; uint64_t name_len, name, date_len, date, desc_len, desc; };
struct obj_array { uint32_t stride, count; uint64_t array; };
struct dev_query { uint32_t type, size; uint64_t pointer; };
struct gpu_info {
	uint32_t gpu_id, gpu_rev, csf_id, l2_features, tiler_features, mem_features, mmu_features;
	uint32_t thread_features, max_threads, thread_max_workgroup_size, thread_max_barrier_size;
	uint32_t coherency_features, texture_features[4], as_present, pad0;
	uint64_t shader_present, l2_present, tiler_present;
	uint32_t core_features, pad;
};
struct vm_create { uint32_t flags, id; uint64_t user_va_range; };
struct vm_bind_op { uint32_t flags, bo_handle; uint64_t bo_offset, va, size; struct obj_array syncs; };
struct vm_bind { uint32_t vm_id, flags; struct obj_array ops; };
struct bo_create { uint64_t size; uint32_t flags, exclusive_vm_id, handle, pad; };
struct queue_create { uint8_t priority, pad[3]; uint32_t ringbuf_size; };
struct group_create {
	struct obj_array queues;
	uint8_t max_compute_cores, max_fragment_cores, max_tiler_cores, priority;
	uint32_t pad;
	uint64_t compute_core_mask, fragment_core_mask, tiler_core_mask;
	uint32_t vm_id, group_handle;
};
struct queue_submit { uint32_t queue_index, stream_size; uint64_t stream_addr; uint32_t latest_flush, pad;
                      struct obj_array syncs; };
struct group_submit { uint32_t group_handle, pad; struct obj_array queue_submits; };
struct tiler_heap_create { uint32_t vm_id, initial_chunk_count, chunk_size, max_chunks, target_in_flight, handle;
                           uint64_t tiler_heap_ctx_gpu_va, first_heap_chunk_gpu_va; };

#define IOCTL_VERSION IOWR(0x00, struct version)
#define IOCTL_DEV_QUERY IOWR(COMMAND_BASE + 0, struct dev_query)
#define IOCTL_VM_CREATE IOWR(COMMAND_BASE + 1, struct vm_create)
#define IOCTL_VM_BIND IOWR(COMMAND_BASE + 3, struct vm_bind)
#define IOCTL_BO_CREATE IOWR(COMMAND_BASE + 5, struct bo_create)
#define IOCTL_GROUP_CREATE IOWR(COMMAND_BASE + 7, struct group_create)
#define IOCTL_GROUP_SUBMIT IOWR(COMMAND_BASE + 9, struct group_submit)
#define IOCTL_TILER_HEAP_CREATE IOWR(COMMAND_BASE + 11, struct tiler_heap_create)

static int fail(const char *what)
{
	printf("failed=%s errno=%d\n", what, errno);
	return 1;
}

int main(int argc, char **argv)
{
	const char *node = argc > 1 ? argv[1] : "/dev/dri/renderD129";
	int fd = open(node, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open");
	struct stat st;
	if (fstat(fd, &st) || !S_ISCHR(st.st_mode))
		return fail("fstat");
	printf("rdev=%u:%u\n", major(st.st_rdev), minor(st.st_rdev));

	char name[32] = {0};
	struct version v = { .name_len = sizeof(name) - 1, .name = (uintptr_t)name };
	if (ioctl(fd, IOCTL_VERSION, &v))
		return fail("version");
	printf("driver=%s\nversion=%d.%d.%d\n", name, v.major, v.minor, v.patchlevel);

	struct dev_query q = { .type = 0 };
	if (ioctl(fd, IOCTL_DEV_QUERY, &q))
		return fail("dev_query size");
	struct gpu_info info;
	memset(&info, 0xff, sizeof(info));
	q.pointer = (uintptr_t)&info;
	if (ioctl(fd, IOCTL_DEV_QUERY, &q))
		return fail("dev_query");
	printf("gpu_info_size=%u\ngpu_id=0x%x\nshader_present=0x%llx\n", q.size, info.gpu_id,
	       (unsigned long long)info.shader_present);
	printf("arch_major=%u\n", info.gpu_id >> 28);

	struct vm_create vc = {0};
	if (ioctl(fd, IOCTL_VM_CREATE, &vc))
		return fail("vm_create");
	struct bo_create bc = { .size = 1 << 20 };
	if (ioctl(fd, IOCTL_BO_CREATE, &bc))
		return fail("bo_create");
	struct vm_bind_op op = { .bo_handle = bc.handle, .va = 0x100000, .size = 1 << 20 };
	struct vm_bind vb = { .vm_id = vc.id, .ops = { sizeof(op), 1, (uintptr_t)&op } };
	if (ioctl(fd, IOCTL_VM_BIND, &vb))
		return fail("vm_bind");
	struct queue_create qc = { .priority = 1, .ringbuf_size = 64 << 10 };
	struct group_create gc = { .queues = { sizeof(qc), 1, (uintptr_t)&qc }, .max_compute_cores = 1,
	                           .max_fragment_cores = 1, .max_tiler_cores = 1, .priority = 1,
	                           .compute_core_mask = info.shader_present, .fragment_core_mask = info.shader_present,
	                           .tiler_core_mask = info.tiler_present, .vm_id = vc.id };
	if (ioctl(fd, IOCTL_GROUP_CREATE, &gc))
		return fail("group_create");
	struct queue_submit qs = { .stream_size = 64, .stream_addr = 0x100000 };
	struct group_submit gs = { .group_handle = gc.group_handle, .queue_submits = { sizeof(qs), 1, (uintptr_t)&qs } };
	if (ioctl(fd, IOCTL_GROUP_SUBMIT, &gs))
		return fail("group_submit");
	struct tiler_heap_create th = { .vm_id = vc.id, .initial_chunk_count = 1, .chunk_size = 2 << 20,
	                                .max_chunks = 8, .target_in_flight = 1 };
	if (ioctl(fd, IOCTL_TILER_HEAP_CREATE, &th))
		return fail("tiler_heap_create");
	printf("vm=%u\nbo=%u\ngroup=%u\nheap=0x%x\n", vc.id, bc.handle, gc.group_handle, th.handle);

	struct bo_create bad = { .size = 0 };
	int ret = ioctl(fd, IOCTL_BO_CREATE, &bad);
	printf("zero_size=%d errno=%d\n", ret, errno);

	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	int f = open(path, O_RDONLY);
	ssize_t n = f < 0 ? -1 : read(f, text, sizeof(text) - 1);
	if (n < 0)
		return fail("fdinfo");
	text[n] = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strncmp(line, "drm-", 4) || !strncmp(line, "panthor-", 8)) {
			char *tab = strstr(line, ":\t");
			if (tab) {
				*tab = 0;
				printf("%s=%s\n", line, tab + 2);
			}
		}
	}
	close(fd);
	return 0;
}
