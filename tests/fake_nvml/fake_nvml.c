/*
 * A fake libnvidia-ml.so.1 for CI: two GPUs with fixed readings.
 *
 * - nvmlDeviceGetTotalEnergyConsumption is deliberately NOT exported: the
 *   energy field must be absent (FailedToLoadSymbol), never 0.
 * - GPU 1 answers the first nvmlDeviceGetUtilizationRates call, then reports
 *   NVML_ERROR_GPU_IS_LOST: from the second tick on it must read as down while
 *   GPU 0 goes on.
 * - GPU 1 has no PCIe counters (NVML_ERROR_NOT_SUPPORTED): absent fields.
 */
#include <stdio.h>
#include <string.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15

typedef struct { int index; } fake_device;
typedef fake_device *nvmlDevice_t;

static fake_device devices[2] = {{0}, {1}};
static int utilization_calls[2];

typedef struct { unsigned int gpu; unsigned int memory; } nvmlUtilization_t;
typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;
typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

static int valid(nvmlDevice_t d) { return d == &devices[0] || d == &devices[1]; }

nvmlReturn_t nvmlInit_v2(void) { return NVML_SUCCESS; }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return NVML_SUCCESS; }
nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }
const char *nvmlErrorString(nvmlReturn_t r) { (void)r; return "fake nvml error"; }

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    snprintf(version, length, "%s", "550.54.15");
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) { *count = 2; return NVML_SUCCESS; }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (index > 1) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(uuid, length, "GPU-fake0000-0000-0000-0000-00000000000%d", d->index);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, length, "%s", "NVIDIA H100 80GB HBM3");
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    pci->bus = 0x17 + d->index;
    pci->pciDeviceId = 0x233010de;
    pci->pciSubSystemId = 0x16c110de;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02x:00.0", pci->bus);
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->index == 1 && utilization_calls[1]++ >= 1) return NVML_ERROR_GPU_IS_LOST;
    u->gpu = d->index == 0 ? 37 : 81;
    u->memory = d->index == 0 ? 12 : 40;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    m->total = 85899345920ULL;        /* 80 GiB */
    m->reserved = 536870912ULL;       /* 512 MiB */
    m->used = d->index == 0 ? 10737418240ULL : 42949672960ULL;
    m->free = m->total - m->reserved - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    *mw = d->index == 0 ? 251500 : 612000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    *mw = 700000;
    return NVML_SUCCESS;
}

/* nvmlDeviceGetTotalEnergyConsumption: left out on purpose. */

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) {
    if (!valid(d) || sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *t = d->index == 0 ? 45 : 71;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    switch (type) {
    case 1: *mhz = 1755; return NVML_SUCCESS; /* SM */
    case 2: *mhz = 2619; return NVML_SUCCESS; /* memory */
    default: *mhz = 1755; return NVML_SUCCESS;
    }
}

nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, int counter, unsigned int *kbps) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->index == 1) return NVML_ERROR_NOT_SUPPORTED;
    *kbps = counter == 0 ? 1000 : 2000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *reasons) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    *reasons = d->index == 0 ? 0x4ULL /* SW power cap */ : 0x1ULL /* GPU idle */;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    (void)d; (void)current; (void)pending;
    return NVML_ERROR_NOT_SUPPORTED;
}

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->index == 1) { *count = 0; return NVML_SUCCESS; }
    if (*count < 1) { *count = 1; return NVML_ERROR_INSUFFICIENT_SIZE; }
    *count = 1;
    infos[0].pid = 4242;
    infos[0].usedGpuMemory = 1073741824ULL;
    infos[0].gpuInstanceId = 0xFFFFFFFF;
    infos[0].computeInstanceId = 0xFFFFFFFF;
    return NVML_SUCCESS;
}
