/* Spore host-function plugins, ABI version 1 (docs/devices.md).
 *
 * A plugin is a shared library that exports `spore_plugin_v1`. It serves one interface (an
 * import module, e.g. "spore:device/uart@0.1") of functions an app granted the device may
 * import with core wasm types: parameters i32 or i64, one i32 result. The runner loads it at
 * start, checks it, and refuses to start if it is not sound.
 *
 * A function answers what it asks for (a count, a level) or a negative errno — WASI's
 * numbers, as every Spore host answers them (SPORE_EFAULT, SPORE_EINVAL, SPORE_EIO below; not
 * the C library's, which differ). It must not block: SPORE_AGAIN means "nothing yet" — the app
 * waits and the call is made again about a millisecond later. Calls come from several threads, one at a time (the runner holds a lock
 * around each), with the app's linear memory: `memory[0..memory_len]`, which the function
 * must not read or write outside of.
 */
#ifndef SPORE_PLUGIN_H
#define SPORE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define SPORE_PLUGIN_ABI 1
#define SPORE_AGAIN (-6)   /* WASI's EAGAIN */
#define SPORE_EBADF (-8)
#define SPORE_EFAULT (-21)
#define SPORE_EINVAL (-28)
#define SPORE_EIO (-29)
#define SPORE_ENXIO (-60)

typedef struct {
    const char *name;   /* the import's name, e.g. "write" */
    const char *params; /* one letter a parameter: 'i' i32, 'I' i64; "" for none; at most 9 */
    int32_t (*call)(void *state, uint8_t *memory, size_t memory_len, const uint64_t *args);
} spore_function;

typedef struct {
    uint32_t abi;            /* SPORE_PLUGIN_ABI */
    const char *interface;   /* the import module, e.g. "spore:device/uart@0.1" */
    const spore_function *functions;
    size_t function_count;
    /* The device, from the operator's configuration string; NULL with a message in `error`
     * (at most error_len bytes, NUL-terminated) if it cannot be opened. */
    void *(*open)(const char *config, char *error, size_t error_len);
    void (*close)(void *state);
} spore_plugin;

const spore_plugin *spore_plugin_v1(void);

#endif
