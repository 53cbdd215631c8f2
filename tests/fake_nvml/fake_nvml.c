/*
 * A fake libnvidia-ml.so.1 for CI: two GPUs with fixed readings.
 *
 * Left out on purpose, so the exporter must report them absent, never 0:
 * - nvmlDeviceGetTotalEnergyConsumption (energy: FailedToLoadSymbol);
 * - nvmlDeviceGetDecoderUtilization (decoder utilisation).
 * Per device:
 * - GPU 1 answers the first nvmlDeviceGetUtilizationRates call, then reports
 *   NVML_ERROR_GPU_IS_LOST: from the second tick on it must read as down while
 *   GPU 0 goes on.
 * - GPU 1 has no PCIe counters, no encoder, no memory temperature, no NVLink
 *   and no XID events (NVML_ERROR_NOT_SUPPORTED / no event types): absent.
 * - Minor numbers are not the indices (GPU 0 is /dev/nvidia2, GPU 1
 *   /dev/nvidia0), so a `device` label built from the index is caught.
 * - GPU 0 reports XID 31 on its first event-set wait, then nothing.
 * - GPU 0's NVLink counters grow by 2048 KiB (TX) and 1024 KiB (RX) per read.
 * Built with -DFAKE_MIG: GPU 0 is in MIG mode with two MIG devices whose GPU
 * instance ids are 3 and 5 (not their indices 0 and 1).
 */
#include <stdio.h>
#include <string.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_TIMEOUT 10
#define NVML_ERROR_GPU_IS_LOST 15

typedef struct {
    int index;          /* parent GPU index */
    int mig;            /* 1 for a MIG device */
    unsigned int gi;    /* MIG: GPU instance id */
    const char *profile;
} fake_device;
typedef fake_device *nvmlDevice_t;

static fake_device devices[2] = {{0, 0, 0, 0}, {1, 0, 0, 0}};
static fake_device migs[2] = {{0, 1, 3, "1g.10gb"}, {0, 1, 5, "3g.40gb"}};
static int utilization_calls[2];
static unsigned long long nvlink_tx_kib, nvlink_rx_kib;

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
static int is_mig(nvmlDevice_t d) { return d == &migs[0] || d == &migs[1]; }
/* Fields a MIG device does not answer in NVML: NOT_SUPPORTED. */
#define FULL_GPU_ONLY(d) do { if (is_mig(d)) return NVML_ERROR_NOT_SUPPORTED; \
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

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
    if (is_mig(d)) {
        snprintf(uuid, length, "MIG-fake0000-0000-0000-0000-00000000000%u", d->gi);
        return NVML_SUCCESS;
    }
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(uuid, length, "GPU-fake0000-0000-0000-0000-00000000000%d", d->index);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    if (is_mig(d)) {
        snprintf(name, length, "NVIDIA H100 80GB HBM3 MIG %s", d->profile);
        return NVML_SUCCESS;
    }
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, length, "%s", "NVIDIA H100 80GB HBM3");
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t d, unsigned int *minor) {
    FULL_GPU_ONLY(d);
    *minor = d->index == 0 ? 2 : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    FULL_GPU_ONLY(d);
    memset(pci, 0, sizeof *pci);
    pci->bus = 0x17 + d->index;
    pci->pciDeviceId = 0x233010de;
    pci->pciSubSystemId = 0x16c110de;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02x:00.0", pci->bus);
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    FULL_GPU_ONLY(d);
    if (d->index == 1 && utilization_calls[1]++ >= 1) return NVML_ERROR_GPU_IS_LOST;
    u->gpu = d->index == 0 ? 37 : 81;
    u->memory = d->index == 0 ? 12 : 40;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    if (is_mig(d)) {
        m->total = d->gi == 3 ? 10737418240ULL : 42949672960ULL;
        m->reserved = 0;
        m->used = 1073741824ULL;
        m->free = m->total - m->used;
        return NVML_SUCCESS;
    }
    if (!valid(d)) return NVML_ERROR_INVALID_ARGUMENT;
    m->total = 85899345920ULL;        /* 80 GiB */
    m->reserved = 536870912ULL;       /* 512 MiB */
    m->used = d->index == 0 ? 10737418240ULL : 42949672960ULL;
    m->free = m->total - m->reserved - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    FULL_GPU_ONLY(d);
    *mw = d->index == 0 ? 251500 : 612000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    FULL_GPU_ONLY(d);
    *mw = 700000;
    return NVML_SUCCESS;
}

/* nvmlDeviceGetTotalEnergyConsumption: left out on purpose. */

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) {
    FULL_GPU_ONLY(d);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *t = d->index == 0 ? 45 : 71;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
    FULL_GPU_ONLY(d);
    switch (type) {
    case 1: *mhz = 1755; return NVML_SUCCESS; /* SM */
    case 2: *mhz = 2619; return NVML_SUCCESS; /* memory */
    default: *mhz = 1755; return NVML_SUCCESS;
    }
}

nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, int counter, unsigned int *kbps) {
    FULL_GPU_ONLY(d);
    if (d->index == 1) return NVML_ERROR_NOT_SUPPORTED;
    *kbps = counter == 0 ? 1000 : 2000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *reasons) {
    FULL_GPU_ONLY(d);
    *reasons = d->index == 0 ? 0x4ULL /* SW power cap */ : 0x1ULL /* GPU idle */;
    return NVML_SUCCESS;
}

#ifdef FAKE_MIG
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    FULL_GPU_ONLY(d);
    if (d->index != 0) return NVML_ERROR_NOT_SUPPORTED;
    *current = 1;
    *pending = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    FULL_GPU_ONLY(d);
    *count = d->index == 0 ? 2 : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index, nvmlDevice_t *mig) {
    FULL_GPU_ONLY(d);
    if (d->index != 0 || index > 1) return NVML_ERROR_INVALID_ARGUMENT;
    *mig = &migs[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    if (!is_mig(d)) return NVML_ERROR_INVALID_ARGUMENT;
    *id = d->gi;
    return NVML_SUCCESS;
}
#else
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    (void)d; (void)current; (void)pending;
    return NVML_ERROR_NOT_SUPPORTED;
}
#endif

nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t d, unsigned int *util, unsigned int *period_us) {
    FULL_GPU_ONLY(d);
    if (d->index == 1) return NVML_ERROR_NOT_SUPPORTED;
    *util = 5;
    *period_us = 167000;
    return NVML_SUCCESS;
}

/* nvmlDeviceGetDecoderUtilization: left out on purpose. */

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t d, unsigned int *value) {
    FULL_GPU_ONLY(d);
    *value = d->index == 0 ? 7 : 0;
    return NVML_SUCCESS;
}

/* nvml.h's nvmlFieldValue_t. */
typedef union {
    double dVal;
    int siVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    unsigned short usVal;
} nvmlValue_t;
typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;
#define NVML_VALUE_TYPE_UNSIGNED_INT 1
#define NVML_VALUE_TYPE_UNSIGNED_LONG_LONG 3

static void set_uint(nvmlFieldValue_t *v, unsigned int x) {
    v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT; v->value.uiVal = x; v->nvmlReturn = NVML_SUCCESS;
}
static void set_ull(nvmlFieldValue_t *v, unsigned long long x) {
    v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG; v->value.ullVal = x; v->nvmlReturn = NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t *values) {
    FULL_GPU_ONLY(d);
    if (d->index == 0) { nvlink_tx_kib += 2048; nvlink_rx_kib += 1024; }
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = 1700000000000000LL;
        v->latencyUsec = 0;
        v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        if (d->index == 1) continue;
        switch (v->fieldId) {
        case 82: set_uint(v, 52); break;                           /* MEMORY_TEMP */
        case 138: /* NVLINK_THROUGHPUT_DATA_TX; this fake answers all links only */
            if (v->scopeId == 0xFFFFFFFFu) set_ull(v, nvlink_tx_kib);
            else v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
            break;
        case 139: /* NVLINK_THROUGHPUT_DATA_RX */
            if (v->scopeId == 0xFFFFFFFFu) set_ull(v, nvlink_rx_kib);
            else v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
            break;
        case 142: set_uint(v, 3); break;                            /* REMAPPED_COR */
        case 143: set_uint(v, 0); break;                            /* REMAPPED_UNC */
        case 145: set_uint(v, 0); break;                            /* REMAPPED_FAILURE */
        default: break;
        }
    }
    return NVML_SUCCESS;
}

/* Event sets: one XID (31) for GPU 0 on the first wait, then timeouts. */
#define NVML_EVENT_TYPE_XID 0x8ULL
typedef struct { nvmlDevice_t device; int used; int delivered; } fake_set;
typedef fake_set *nvmlEventSet_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;
static fake_set sets[8];

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t d, unsigned long long *types) {
    FULL_GPU_ONLY(d);
    *types = d->index == 0 ? NVML_EVENT_TYPE_XID : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    for (int i = 0; i < 8; i++) {
        if (!sets[i].used) {
            memset(&sets[i], 0, sizeof sets[i]);
            sets[i].used = 1;
            *set = &sets[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_INSUFFICIENT_SIZE;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
    FULL_GPU_ONLY(d);
    if (d->index != 0 || types != NVML_EVENT_TYPE_XID) return NVML_ERROR_NOT_SUPPORTED;
    set->device = d;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms) {
    (void)timeout_ms;
    if (!set->device || set->delivered) return NVML_ERROR_TIMEOUT;
    set->delivered = 1;
    data->device = set->device;
    data->eventType = NVML_EVENT_TYPE_XID;
    data->eventData = 31;
    data->gpuInstanceId = 0xFFFFFFFFu;
    data->computeInstanceId = 0xFFFFFFFFu;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    set->used = 0;
    set->device = 0;
    return NVML_SUCCESS;
}

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    FULL_GPU_ONLY(d);
    if (d->index == 1) { *count = 0; return NVML_SUCCESS; }
    if (*count < 1) { *count = 1; return NVML_ERROR_INSUFFICIENT_SIZE; }
    *count = 1;
    infos[0].pid = 4242;
    infos[0].usedGpuMemory = 1073741824ULL;
    infos[0].gpuInstanceId = 0xFFFFFFFF;
    infos[0].computeInstanceId = 0xFFFFFFFF;
    return NVML_SUCCESS;
}
