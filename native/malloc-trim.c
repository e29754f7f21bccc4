/*
 * A Node addon with one function, trim(): glibc's malloc_trim(0). free() hands memory back to
 * the kernel only from the top of a malloc heap; a chunk freed below a live one stays resident,
 * however long the daemon then idles. After a pull (and after the unpack worker thread exits),
 * berthd calls trim() once: glibc then walks every arena and releases the whole pages inside its
 * free chunks (madvise MADV_DONTNEED), which nothing in Node or V8 does. Returns true when memory
 * was released. Loaded by src/util/malloc-trim.ts; berthd works without it.
 */
#include <malloc.h>
#include <node_api.h>

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value released;
  if (napi_get_boolean(env, malloc_trim(0) == 1, &released) != napi_ok) return NULL;
  return released;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != napi_ok) return NULL;
  return exports;
}
