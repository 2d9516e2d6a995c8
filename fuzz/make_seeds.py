#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz/corpus/<harness>/ (files named seed-*).

Run from the repository root: python3 fuzz/make_seeds.py. Seeds are small valid
examples trimmed from tests/data plus a few malformed ones; the coordinator's are
text-format protos encoded with protoc (see fuzz/coordinator_fuzzer.cc for the
input layout and the "@" placeholders). Inputs the fuzzer found (merged by
scripts/fuzz.sh) sit beside them under libFuzzer's hash names and are not touched.
Needs only python3, protoc and zstd (all in scripts/install-deps.sh).
"""

import json
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- safetensors ---------------------------------------------------------------

def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] -> file bytes."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(n, v=0.01):
    return struct.pack("<%df" % n, *([v] * n))


MICRO = {"vocab": 32, "hidden": 8, "inter": 16, "heads": 2, "kv_heads": 1}


def micro_tensors():
    h, f, v = MICRO["hidden"], MICRO["inter"], MICRO["vocab"]
    q, kv = 8, 4
    t = [("model.embed_tokens.weight", [v, h]), ("model.norm.weight", [h]),
         ("lm_head.weight", [v, h])]
    p = "model.layers.0."
    t += [(p + "input_layernorm.weight", [h]), (p + "post_attention_layernorm.weight", [h]),
          (p + "self_attn.q_proj.weight", [q, h]), (p + "self_attn.k_proj.weight", [kv, h]),
          (p + "self_attn.v_proj.weight", [kv, h]), (p + "self_attn.o_proj.weight", [h, q]),
          (p + "mlp.gate_proj.weight", [f, h]), (p + "mlp.up_proj.weight", [f, h]),
          (p + "mlp.down_proj.weight", [h, f])]
    out = []
    for name, shape in t:
        n = 1
        for d in shape:
            n *= d
        out.append((name, "F32", shape, f32(n)))
    return out


def safetensors_seeds():
    put("safetensors", "micro-model", safetensors(micro_tensors(), {"format": "pt"}))
    # Two real tensors of llama-tiny (its norms), bytes as stored.
    with open(os.path.join(DATA, "models", "llama-tiny", "model.safetensors"), "rb") as fh:
        blob = fh.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    kept = []
    for name in ("model.norm.weight", "model.layers.0.input_layernorm.weight"):
        e = header[name]
        b, end = e["data_offsets"]
        kept.append((name, e["dtype"], e["shape"], blob[base + b:base + end]))
    put("safetensors", "llama-tiny-norms", safetensors(kept, header.get("__metadata__")))
    put("safetensors", "dtypes", safetensors([
        ("a", "F16", [2, 2], struct.pack("<4H", 0x3c00, 0x0001, 0x7c00, 0x8000)),
        ("b", "BF16", [3], struct.pack("<3H", 0x3f80, 0x7fc0, 0x0080)),
        ("c", "F64", [1], struct.pack("<d", 1e300)),
        ("d", "I8", [2], b"\x01\xff"),
        ("e", "BOOL", [1], b"\x01"),
        ("f", "I64", [], struct.pack("<q", -1)),
        ("g", "I32", [0, 3], b""),
        ("h", "U8", [1], b"\x07"),
    ]))
    put("safetensors", "unpadded", safetensors([("x", "F32", [2], f32(2))], pad=False))
    overlap = (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
               b'"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}')
    put("safetensors", "overlap", struct.pack("<Q", len(overlap)) + overlap + b"\0" * 8)
    put("safetensors", "truncated", safetensors([("x", "F32", [4], f32(4))])[:-5])
    put("safetensors", "huge-header-length", struct.pack("<Q", 1 << 62) + b"{}")
    put("safetensors", "not-json", struct.pack("<Q", 4) + b"{[}]")
    put("safetensors", "absurd-shape",
        safetensors([("x", "F32", [1 << 40, 1 << 30], b"")]))


# ---- config.json ---------------------------------------------------------------

def config_seeds():
    for m in ("llama-tiny", "mistral-tiny", "qwen2-tiny", "llama-tiny-tied"):
        with open(os.path.join(DATA, "models", m, "config.json"), "rb") as fh:
            put("model_config", m, fh.read())
    with open(os.path.join(DATA, "models", "llama-tiny", "config.json")) as fh:
        base = json.load(fh)

    def variant(name, **changes):
        c = dict(base)
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        put("model_config", name, json.dumps(c))

    variant("layers-2-40", num_hidden_layers=1 << 40)
    variant("negative-heads", num_attention_heads=-4)
    variant("head-dim-odd", head_dim=7)
    variant("rope-scaling", rope_scaling={"type": "linear", "factor": 2.0})
    variant("float-vocab", vocab_size=4096.5)
    variant("no-kv-heads", num_key_value_heads=None, head_dim=16)
    variant("mamba", model_type="mamba")
    variant("eos-list", eos_token_id=[2, 3], bos_token_id="x")
    put("model_config", "not-object", "[1, 2, 3]")
    put("model_config", "truncated", json.dumps(base)[:100])


# ---- tokenizer.json ------------------------------------------------------------

def tokenizer_seeds():
    with open(os.path.join(DATA, "tokenizers", "bpe4k", "tokenizer.json")) as fh:
        tok = json.load(fh)
    with open(os.path.join(DATA, "tokenizers", "bpe4k", "tokenizer_config.json"), "rb") as fh:
        tok_config = fh.read()
    vocab = tok["model"]["vocab"]
    merges = tok["model"]["merges"][:24]
    keep = {}
    for t in tok["added_tokens"]:
        keep[t["content"]] = t["id"]
    # The 256 byte-level symbols, then the tokens the kept merges make.
    for token, i in vocab.items():
        if len(token) == 1:
            keep[token] = i
    for a, b in merges:
        for t in (a, b, a + b):
            keep[t] = vocab[t]
    small = dict(tok)
    small["model"] = dict(tok["model"], vocab=dict(sorted(keep.items(), key=lambda kv: kv[1])),
                          merges=merges)
    text = json.dumps(small, ensure_ascii=False)
    put("tokenizer", "bpe-trimmed", text)
    put("tokenizer", "bpe-trimmed-with-config", text.encode() + b"\0" + tok_config)

    def variant(name, **changes):
        t = dict(small)
        t.update(changes)
        put("tokenizer", name, json.dumps(t, ensure_ascii=False))

    variant("gpt2-regex", pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True,
                                         "use_regex": True},
            normalizer=None)
    variant("template", post_processor={
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "<|im_end|>", "type_id": 0}}],
        "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1]}}})
    variant("roberta", post_processor={"type": "RobertaProcessing", "cls": ["<s>", 1],
                                       "sep": ["</s>", 2]})
    variant("normalized-added", added_tokens=[
        {"id": 0, "content": "<|endoftext|>", "special": True},
        {"id": 1, "content": " ing", "normalized": True, "lstrip": True, "rstrip": True},
        {"id": 2, "content": "wor", "single_word": True, "normalized": False}])
    variant("split-string", pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": " "}, "behavior": "Isolated"},
        {"type": "ByteLevel", "use_regex": False}]})
    variant("unk-ignore-merges", model=dict(small["model"], unk_token="<|endoftext|>",
                                            ignore_merges=True, fuse_unk=True,
                                            merges=[" ".join(m) for m in merges]))
    variant("metaspace", pre_tokenizer={"type": "Metaspace"}, decoder={"type": "Metaspace"})
    # Minimal byte-level BPE files: small inputs mutate faster.
    minimal = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
               "decoder": {"type": "ByteLevel"},
               "pre_tokenizer": {"type": "ByteLevel", "use_regex": False}}
    put("tokenizer", "minimal", json.dumps(minimal))
    put("tokenizer", "minimal-added", json.dumps(dict(minimal, added_tokens=[
        {"id": 3, "content": "<s>", "special": True}, {"id": 4, "content": "x", "normalized": True}])))
    put("tokenizer", "minimal-roberta", json.dumps(dict(minimal, post_processor={
        "type": "RobertaProcessing", "cls": ["a", 0], "sep": ["b", 1]})))
    put("tokenizer", "minimal-template", json.dumps(dict(minimal, post_processor={
        "type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "ab"}}, {"Sequence": {}}],
        "special_tokens": {"ab": {"ids": [2]}}})))
    put("tokenizer", "not-object", "[]")
    put("tokenizer", "bad-merge", json.dumps(dict(small, model=dict(
        small["model"], merges=[["zz", "q"]]))))


# ---- corpora -------------------------------------------------------------------

def corpus_seeds():
    with open(os.path.join(DATA, "corpus", "sample.jsonl")) as fh:
        lines = fh.read().splitlines()[:3]
    records = [json.dumps({"text": json.loads(l)["text"][:160], "meta": {"i": i}})
               for i, l in enumerate(lines)]
    jsonl = ("\n".join(records) + "\n").encode()
    put("corpus", "sample-trimmed.jsonl", jsonl)
    put("corpus", "mixed.jsonl",
        b'{"text": "one"}\n\n   \n{"text": ""}\n[1]\n{"text": 5}\nnot json\n'
        b'{"text": "bad \\ud800 surrogate"}\n{"text": "caf\xc3\xa9"}\n\xff\xfe\n'
        b'{"text": "no newline at the end"}')
    put("corpus", "paragraphs.txt",
        b"First paragraph,\r\nstill the first.\r\n\r\n \t \nSecond one.\n\n\n"
        b"Third \xe2\x82\xac\nwith \xc3 bad byte\n")
    put("corpus", "long-line.jsonl", b'{"text": "' + b"x" * 300 + b'"}\n{"text": "short"}\n')
    z = subprocess.run(["zstd", "-q", "-c", "-19"], input=jsonl, stdout=subprocess.PIPE,
                       check=True).stdout
    put("corpus", "sample-trimmed.jsonl.zst", z)
    put("corpus", "zstd-truncated", z[:len(z) // 2])
    put("corpus", "zstd-skippable", struct.pack("<II", 0x184D2A50, 4) + b"skip" + z)


# ---- coordinator requests ------------------------------------------------------

PROTOS = ["proto/qcal/v1/calibration.proto", "proto/qcal/v1/worker.proto",
          "proto/qcal/v1/evaluation.proto", "proto/qcal/v1/export.proto"]


def encode(message, text):
    r = subprocess.run(["protoc", "--proto_path=" + ROOT, "--encode=qcal.v1." + message]
                       + [os.path.join(ROOT, p) for p in PROTOS],
                       input=text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=ROOT)
    if r.returncode != 0:
        sys.exit("protoc --encode %s failed: %s\n%s" % (message, r.stderr.decode(), text))
    return r.stdout


def request(name, mode, message, text):
    put("coordinator", name, bytes([mode]) + encode(message, text))


def tensor_stats(channels, rows=4):
    # Half the rows -1, half 2: min -1, max 2, two sketch buckets (keys 0x4000, 0xBF80).
    per = rows // 2
    vals = lambda v: "[" + ", ".join([repr(v)] * channels) + "]"
    return ("{ channels: %d count: %d min: %s max: %s sum: %s sumsq: %s "
            "sketch { format: SKETCH_FORMAT_F32_TOP16 key_deltas: [16384, 32640] "
            "counts: [%d, %d] } }" % (channels, rows, vals(-1.0), vals(2.0),
                                      vals(float(per)), vals(5.0 * per),
                                      per * channels, per * channels))


MICRO_LINEARS = [("model.layers.0.self_attn.q_proj", 8, 8),
                 ("model.layers.0.self_attn.k_proj", 8, 4),
                 ("model.layers.0.self_attn.v_proj", 8, 4),
                 ("model.layers.0.self_attn.o_proj", 8, 8),
                 ("model.layers.0.mlp.gate_proj", 8, 16),
                 ("model.layers.0.mlp.up_proj", 8, 16),
                 ("model.layers.0.mlp.down_proj", 16, 8),
                 ("lm_head", 8, 32)]
HEADER = 'header { worker_id: "@" task_id: "@" lease_id: "@" tokens: 64 compute_seconds: 0.5 }'


def coordinator_seeds():
    micro = ('spec { model: "models/micro" corpus: "corpus/sample.jsonl" '
             'sampling { num_samples: 8 seq_len: 16 } shard_size: 4 }')
    request("submit-micro", 0, "SubmitJobRequest", micro)
    request("submit-llama-tiny", 0, "SubmitJobRequest",
            'spec { model: "models/llama-tiny" corpus: "corpus/sample.jsonl" '
            'sampling { num_samples: 20 seq_len: 64 order: "sequential" seed: 7 } '
            'shard_size: 3 batch_size: 2 report_interval_seconds: 5 display_name: "tiny" }')
    request("submit-packed", 0, "SubmitJobRequest",
            'spec { model: "models/micro" corpus: "corpus/sample.jsonl" '
            'sampling { num_samples: 100 seq_len: 32 mode: "packed" skip_docs: 2 '
            'skip_bad_lines: true no_special_tokens: true } shard_size: 16 }')
    request("submit-retry-other-spec", 0, "SubmitJobRequest",
            micro.replace("num_samples: 8", "num_samples: 9") + ' request_id: "r1"')
    request("submit-outside", 0, "SubmitJobRequest",
            'spec { model: "/etc" corpus: "../corpus/sample.jsonl" }')
    request("submit-missing", 0, "SubmitJobRequest",
            'spec { model: "models/none" corpus: "corpus" }')
    request("submit-seq-too-long", 0, "SubmitJobRequest",
            micro.replace("seq_len: 16", "seq_len: 100000"))
    request("submit-too-many-docs", 0, "SubmitJobRequest",
            micro.replace("num_samples: 8", "num_samples: 21"))
    # Issue 15's unbounded requests: once gigabytes, now refused by the shard limit.
    request("submit-10M-packed", 0, "SubmitJobRequest",
            'spec { model: "models/micro" corpus: "corpus/sample.jsonl" sampling { '
            'num_samples: 10000000 seq_len: 16 mode: "packed" } shard_size: 1 }')

    ev = 'job_id: "@" eval_corpus: "corpus/sample.jsonl" eval_sampling { num_samples: 4 }'
    request("evaluate-defaults", 1, "EvaluateRequest", ev)
    request("evaluate-mllm-ppl", 1, "EvaluateRequest",
            ev + ' thresholds: [1, 2.5, 4] mode: "mllm" budget: 0.05 budget_metric: "ppl" '
            'shard_size: 2 batch_size: 3')
    request("evaluate-descending", 1, "EvaluateRequest", ev + " thresholds: [4, 2]")
    request("evaluate-1000x10M", 1, "EvaluateRequest",
            'job_id: "@" eval_corpus: "corpus/sample.jsonl" eval_sampling { num_samples: 10000000 '
            'mode: "packed" } shard_size: 1 thresholds: [%s]'
            % ", ".join(str(i + 1) for i in range(1000)))
    request("evaluate-unknown-job", 1, "EvaluateRequest",
            ev.replace('"@"', '"job-000001-0000"'))

    ex = 'job_id: "@" output: "x1" '
    request("export-mllm", 2, "ExportRequest", ex + 'threshold: 4 format: "mllm"')
    request("export-safetensors-smooth", 2, "ExportRequest",
            ex + 'threshold: 2 format: "safetensors" smoothing: "smoothquant:0.5" fuse: true '
            'per_channel_weights: true mode: "mllm"')
    request("export-compressed-logeq", 2, "ExportRequest",
            ex + 'threshold: 8 format: "compressed-tensors" smoothing: "logeq"')
    request("export-stats-recommended", 2, "ExportRequest",
            ex + 'recommended: true format: "stats"')
    request("export-outside", 2, "ExportRequest", 'job_id: "@" output: "../x" threshold: 1')

    linears = " ".join('linears { name: "%s" input: %s output: %s }'
                       % (n, tensor_stats(i), tensor_stats(o)) for n, i, o in MICRO_LINEARS)
    request("complete-calibration", 3, "CompleteTaskChunk", HEADER + " " + linears)
    request("complete-calibration-wrong-width", 3, "CompleteTaskChunk",
            HEADER + " " + linears.replace("channels: 32", "channels: 31", 1))
    partial = "shards { hits: 3 total: 4 nll_sum: 2.5 predictions: 4 }"
    request("complete-evaluation", 4, "CompleteTaskChunk",
            HEADER + " result { [type.googleapis.com/qcal.v1.EvaluateResult] { %s } }" % partial)
    request("complete-evaluation-two", 4, "CompleteTaskChunk",
            HEADER + " result { [type.googleapis.com/qcal.v1.EvaluateResult] { %s %s } }"
            % (partial, partial))
    request("complete-export", 5, "CompleteTaskChunk",
            HEADER + ' result { [type.googleapis.com/qcal.v1.ExportResponse] { output_dir: "@" '
            'format: "mllm" threshold: 4 files: "act_scales_distribution.json" bytes: 100 '
            'shadow_layers: [0] quantized_linears: 7 } }')
    request("complete-wrong-kind", 5, "CompleteTaskChunk", HEADER + " " + linears)


def main():
    safetensors_seeds()
    config_seeds()
    tokenizer_seeds()
    corpus_seeds()
    coordinator_seeds()
    total = 0
    for d, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    print("make_seeds: fuzz/corpus holds %d bytes" % total)


if __name__ == "__main__":
    main()
