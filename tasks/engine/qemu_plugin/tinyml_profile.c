/* doit-tinyml: a QEMU TCG plugin that profiles a Cortex-M firmware run for the time-per-inference model.
 *
 * Between the first execution of the address `begin` and the next execution of `end` (both given as
 * plugin arguments; without them, the whole run), it counts for every translation block executed:
 * how often it ran, how often it was left by a jump (the next block did not start where it ended), and
 * for every instruction how many data accesses went to each memory region. At exit it writes `out`:
 *   tb <vaddr> <n insns> <execs> <taken exits> <insn vaddr>:<size>[:<code reads>:<ram reads>:<writes>] ...
 * one line per block (blocks translated twice are merged by the reader). Our own code: it declares the
 * few functions of QEMU's plugin API that it uses (version 1: QEMU 4.2 to 8.2; QEMU 9 and later refuse
 * it, and the time model then falls back to the instruction count alone).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr, void *userdata);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb_t cb,
                                                 enum qemu_plugin_cb_flags flags, void *userdata);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
extern size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
extern void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, vcpu_mem_cb_t cb,
                                             enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                             void *userdata);
extern bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

typedef struct Insn {
  uint64_t vaddr;
  uint32_t size;
  uint64_t code_reads, ram_reads, writes;
} Insn;

typedef struct Tb {
  uint64_t vaddr, end;
  uint64_t execs, taken;
  size_t n;
  Insn *insns;
  struct Tb *next;
} Tb;

static Tb *all_tbs;
static Tb *last_tb;
static bool active;
static uint64_t begin_addr = UINT64_MAX, end_addr = UINT64_MAX;
static uint64_t code_limit = 0x20000000u; /* accesses below: code memory (flash on a board) */
static char out_path[4096] = "tinyml_profile.txt";

static void tb_exec(unsigned int vcpu, void *udata) {
  (void)vcpu;
  Tb *tb = (Tb *)udata;
  if (tb->vaddr == begin_addr) active = true;
  else if (tb->vaddr == end_addr) active = false;
  if (active) {
    if (last_tb && last_tb->end != tb->vaddr) last_tb->taken++;
    tb->execs++;
    last_tb = tb;
  } else {
    last_tb = NULL;
  }
}

static void mem_access(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata) {
  (void)vcpu;
  if (!active) return;
  Insn *in = (Insn *)udata;
  if (qemu_plugin_mem_is_store(info)) in->writes++;
  else if (vaddr < code_limit) in->code_reads++;
  else in->ram_reads++;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *qtb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(qtb);
  Tb *tb = calloc(1, sizeof(Tb));
  tb->insns = calloc(n ? n : 1, sizeof(Insn));
  tb->n = n;
  tb->vaddr = qemu_plugin_tb_vaddr(qtb);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn *qi = qemu_plugin_tb_get_insn(qtb, i);
    tb->insns[i].vaddr = qemu_plugin_insn_vaddr(qi);
    tb->insns[i].size = (uint32_t)qemu_plugin_insn_size(qi);
    qemu_plugin_register_vcpu_mem_cb(qi, mem_access, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, &tb->insns[i]);
  }
  tb->end = n ? tb->insns[n - 1].vaddr + tb->insns[n - 1].size : tb->vaddr;
  tb->next = all_tbs;
  all_tbs = tb;
  qemu_plugin_register_vcpu_tb_exec_cb(qtb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, tb);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
  (void)id;
  (void)p;
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "tinyml-profile 1 begin=%" PRIu64 " end=%" PRIu64 "\n", begin_addr, end_addr);
  for (Tb *tb = all_tbs; tb; tb = tb->next) {
    if (!tb->execs) continue;
    fprintf(f, "tb %" PRIx64 " %zu %" PRIu64 " %" PRIu64, tb->vaddr, tb->n, tb->execs, tb->taken);
    for (size_t i = 0; i < tb->n; ++i) {
      Insn *in = &tb->insns[i];
      if (in->code_reads || in->ram_reads || in->writes)
        fprintf(f, " %" PRIx64 ":%u:%" PRIu64 ":%" PRIu64 ":%" PRIu64, in->vaddr, in->size, in->code_reads,
                in->ram_reads, in->writes);
      else
        fprintf(f, " %" PRIx64 ":%u", in->vaddr, in->size);
    }
    fputc('\n', f);
  }
  fclose(f);
  rename(tmp, out_path);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc,
                                                               char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i];
    if (!strncmp(a, "begin=", 6)) begin_addr = strtoull(a + 6, NULL, 0);
    else if (!strncmp(a, "end=", 4)) end_addr = strtoull(a + 4, NULL, 0);
    else if (!strncmp(a, "code_limit=", 11)) code_limit = strtoull(a + 11, NULL, 0);
    else if (!strncmp(a, "out=", 4)) snprintf(out_path, sizeof out_path, "%s", a + 4);
    else {
      fprintf(stderr, "tinyml_profile: unknown argument %s\n", a);
      return -1;
    }
  }
  active = begin_addr == UINT64_MAX;
  qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}
