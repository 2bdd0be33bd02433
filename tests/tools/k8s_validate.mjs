// Validate Kubernetes objects (YAML files, or JSON arrays of objects) against the official schemas
// (npm kubernetes-models: types, required fields, formats and quantities), the SeiferModel CRD's
// structural schema (ajv), and what the schemas do not say: unknown fields (from the property
// lists of kubernetes-models' type declarations), names (DNS-1123, label syntax, IANA port names),
// references inside an object (volumes, ports, selectors), the order `kubectl apply -f DIR`
// applies files in, and the rules for the stage Deployments the controller generates.
//
//   NODE_MODULES=DIR node k8s_validate.mjs --crd CRD.yaml [--dir-order DIR] FILE...
// Prints one line per object; exits 1 when anything is wrong.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const MODS = process.env.NODE_MODULES;
if (!MODS) {
  console.error("NODE_MODULES is not set");
  process.exit(2);
}
const require = createRequire(path.join(MODS, "noop.js"));
const yaml = require("js-yaml");
const Ajv = require("ajv").default;
const addFormats = require("ajv-formats").default;
const KM = path.join(MODS, "kubernetes-models");

let failures = 0, checked = 0;
const fail = (where, msg) => {
  failures++;
  console.log(`FAIL ${where}: ${msg}`);
};

// ---- names ---------------------------------------------------------------------------------------
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dnsLabel = (s) => typeof s === "string" && s.length <= 63 && DNS_LABEL.test(s);
const dns1035 = (s) => dnsLabel(s) && /^[a-z]/.test(s);
const dnsSubdomain = (s) => typeof s === "string" && s.length <= 253 && s.split(".").every(dnsLabel);
const labelName = (s) => s.length <= 63 && /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(s);
const qualifiedName = (k) => {
  const i = k.lastIndexOf("/");
  if (i >= 0 && !dnsSubdomain(k.slice(0, i))) return false;
  return labelName(i >= 0 ? k.slice(i + 1) : k);
};
const labelValue = (v) => typeof v === "string" && (v === "" || labelName(v));
const ianaSvcName = (s) =>
  typeof s === "string" && s.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s) && /[a-z]/.test(s) &&
  !s.includes("--");
const cIdentifier = (s) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(s);

// ---- unknown fields: property lists parsed from kubernetes-models' .d.ts files -----------------------
const ifaceCache = new Map();
function resolveImport(fromFile, spec) {
  let p = spec.startsWith(".") ? path.resolve(path.dirname(fromFile), spec) : path.join(MODS, spec);
  p = p.replace(/\.js$/, "");
  return p + ".d.ts";
}
function parseIface(file) {
  if (ifaceCache.has(file)) return ifaceCache.get(file);
  let src;
  try {
    src = fs.readFileSync(file, "utf8");
  } catch {
    ifaceCache.set(file, null);
    return null;
  }
  const imports = new Map();
  for (const m of src.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g))
    for (const n of m[1].split(",").map((x) => x.trim()).filter(Boolean)) imports.set(n, m[2]);
  const start = src.search(/export interface \w+(\s+extends\s+[\w, ]+)?\s*\{/);
  if (start < 0) {
    ifaceCache.set(file, null); // a type alias (Quantity, IntOrString, JSON, ...): a leaf
    return null;
  }
  let i = src.indexOf("{", start) + 1, depth = 1;
  const body0 = i;
  while (depth > 0 && i < src.length) {
    if (src[i] === "{") depth++;
    else if (src[i] === "}") depth--;
    i++;
  }
  const body = src.slice(body0, i - 1).replace(/\/\*[\s\S]*?\*\//g, "");
  const props = new Map();
  const re = /"([^"]+)"\??:\s*/g;
  let m;
  while ((m = re.exec(body))) {
    let j = re.lastIndex, d = 0;
    while (j < body.length && !(d === 0 && body[j] === ";")) {
      if ("{<(".includes(body[j])) d++;
      else if ("}>)".includes(body[j])) d--;
      j++;
    }
    props.set(m[1], body.slice(re.lastIndex, j).trim());
    re.lastIndex = j + 1;
  }
  if (/export interface \w+\s+extends\s+TypeMeta/.test(src)) {
    props.set("apiVersion", "string");
    props.set("kind", "string");
  }
  const info = { file, props, imports };
  ifaceCache.set(file, info);
  return info;
}
function walkType(info, type, v, where) {
  type = type.replace(/\s+/g, " ").trim();
  if (v === null || v === undefined) return;
  let m;
  if ((m = /^Array<(.*)>$/.exec(type))) {
    if (Array.isArray(v)) v.forEach((x, k) => walkType(info, m[1], x, `${where}[${k}]`));
    return;
  }
  if ((m = /^\{ \[key: string\]: (.*); \}$/.exec(type))) {
    if (typeof v === "object" && !Array.isArray(v))
      for (const [k, x] of Object.entries(v)) walkType(info, m[1], x, `${where}.${k}`);
    return;
  }
  if (info.imports.has(type)) {
    const sub = parseIface(resolveImport(info.file, info.imports.get(type)));
    if (sub) walkFields(sub, v, where);
  }
}
function walkFields(info, obj, where) {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return;
  for (const [k, v] of Object.entries(obj)) {
    if (!info.props.has(k)) {
      fail(where, `unknown field "${k}"`);
      continue;
    }
    walkType(info, info.props.get(k), v, `${where}.${k}`);
  }
}

// ---- the official schema ---------------------------------------------------------------------------
function modelDir(apiVersion) {
  return apiVersion.includes("/") ? apiVersion : `v1`;
}
async function officialCheck(o, where) {
  const file = path.join(KM, modelDir(o.apiVersion), `${o.kind}.js`);
  if (!fs.existsSync(file)) return false;
  const mod = await import(pathToFileURL(file).href);
  const Cls = mod[o.kind];
  try {
    new Cls(o).validate();
  } catch (e) {
    fail(where, `schema: ${e.message}`);
  }
  const info = parseIface(file.replace(/\.js$/, ".d.ts"));
  if (info) walkFields(info, o, where);
  else fail(where, `no type declaration for ${o.kind}`);
  return true;
}

// ---- the CRD -----------------------------------------------------------------------------------------
const crdSchemas = new Map(); // "group/version/Kind" -> {validate, status}
function structural(s, where) {
  if (typeof s !== "object" || s === null) return fail(where, "schema node is not an object");
  const preserve = s["x-kubernetes-preserve-unknown-fields"] === true || s["x-kubernetes-int-or-string"] === true;
  if (!s.type && !preserve) fail(where, "structural schema: every node needs a type");
  for (const k of ["$ref", "definitions", "dependencies", "patternProperties", "id"])
    if (k in s) fail(where, `structural schema: "${k}" is not allowed`);
  if (s.properties) for (const [k, v] of Object.entries(s.properties)) structural(v, `${where}.${k}`);
  if (s.items) structural(s.items, `${where}[]`);
  if (s.additionalProperties && typeof s.additionalProperties === "object")
    structural(s.additionalProperties, `${where}.*`);
  if (s.type === "array" && !s.items) fail(where, "structural schema: an array needs items");
}
function addCrd(crd, where) {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  for (const v of crd.spec.versions) {
    const s = v.schema && v.schema.openAPIV3Schema;
    if (!s) {
      fail(where, `version ${v.name} has no openAPIV3Schema`);
      continue;
    }
    structural(s, `${where} ${v.name}`);
    const md = s.properties && s.properties.metadata;
    if (md && Object.keys(md).some((k) => k !== "type")) fail(where, "metadata may only say type: object");
    if (v.subresources && v.subresources.status && !(s.properties && s.properties.status))
      fail(where, "a status subresource needs a status schema");
    crdSchemas.set(`${crd.spec.group}/${v.name}/${crd.spec.names.kind}`, {
      full: ajv.compile(s),
      status: s.properties && s.properties.status ? ajv.compile(s.properties.status) : null,
    });
  }
  if (crd.metadata.name !== `${crd.spec.names.plural}.${crd.spec.group}`)
    fail(where, "a CRD's name must be PLURAL.GROUP");
}
function crdCheck(o, where) {
  const c = crdSchemas.get(`${o.apiVersion}/${o.kind}`);
  if (!c) return false;
  // a status apply configuration holds only metadata.name and status
  const statusOnly = !o.spec && o.status;
  const ok = statusOnly ? c.status(o.status) : c.full(o);
  const errs = statusOnly ? c.status.errors : c.full.errors;
  if (!ok) fail(where, `CRD schema: ${errs.map((e) => `${e.instancePath} ${e.message}`).join("; ")}`);
  if (dnsSubdomain(o.metadata.name) && o.metadata.name.length > 40) fail(where, "SeiferModel names are at most 40");
  return true;
}

// ---- names, references, rules ---------------------------------------------------------------------
const NAMESPACED = new Set(["Deployment", "DaemonSet", "Service", "ServiceAccount", "Role", "RoleBinding", "Secret",
  "ConfigMap", "Lease", "SeiferModel", "Pod"]);
function metaCheck(o, where) {
  const md = o.metadata || {};
  const okName = o.kind === "Namespace" ? dnsLabel(md.name) : o.kind === "Service" ? dns1035(md.name) : dnsSubdomain(md.name);
  if (!okName) fail(where, `metadata.name "${md.name}" is not a valid ${o.kind} name`);
  if (NAMESPACED.has(o.kind) && !statusPatch(o)) {
    if (!md.namespace) fail(where, "a namespaced object needs metadata.namespace (kubectl apply -f has no -n)");
    else if (!dnsLabel(md.namespace)) fail(where, `namespace "${md.namespace}" is not a DNS-1123 label`);
  }
  for (const [k, v] of Object.entries(md.labels || {})) {
    if (!qualifiedName(k)) fail(where, `label key "${k}"`);
    if (!labelValue(v)) fail(where, `label ${k}: value "${v}"`);
  }
  for (const k of Object.keys(md.annotations || {})) if (!qualifiedName(k)) fail(where, `annotation key "${k}"`);
}
const statusPatch = (o) => o.kind === "SeiferModel" && !o.spec && o.status;

function podCheck(ps, where, tplLabels) {
  if (!ps) return;
  const vols = new Set((ps.volumes || []).map((v) => v.name));
  for (const v of ps.volumes || []) if (!dnsLabel(v.name)) fail(where, `volume name "${v.name}"`);
  if (ps.nodeName) fail(where, "pods are pinned with node affinity, never nodeName");
  if (ps.hostNetwork && ps.dnsPolicy !== "ClusterFirstWithHostNet")
    fail(where, "hostNetwork pods need dnsPolicy ClusterFirstWithHostNet to resolve Services");
  const names = new Set();
  for (const c of ps.containers || []) {
    if (!dnsLabel(c.name)) fail(where, `container name "${c.name}"`);
    if (names.has(c.name)) fail(where, `container name "${c.name}" twice`);
    names.add(c.name);
    const ports = new Set();
    for (const p of c.ports || []) {
      if (p.name !== undefined) {
        if (!ianaSvcName(p.name)) fail(where, `port name "${p.name}" (IANA service name, at most 15)`);
        ports.add(p.name);
      }
      if (ps.hostNetwork && p.hostPort !== undefined && p.hostPort !== p.containerPort)
        fail(where, "with hostNetwork, hostPort must equal containerPort");
    }
    for (const m of c.volumeMounts || []) if (!vols.has(m.name)) fail(where, `volumeMount "${m.name}" names no volume`);
    for (const e of c.env || []) if (!cIdentifier(e.name)) fail(where, `env name "${e.name}"`);
    for (const pr of ["readinessProbe", "livenessProbe", "startupProbe"]) {
      const h = c[pr] && (c[pr].tcpSocket || c[pr].httpGet);
      if (h && typeof h.port === "string" && !ports.has(h.port)) fail(where, `${pr} port "${h.port}" is not declared`);
    }
    const rq = c.resources && c.resources.requests, lm = c.resources && c.resources.limits;
    if (rq && lm && rq.memory && lm.memory && quantity(rq.memory) > quantity(lm.memory))
      fail(where, `container ${c.name}: memory request above its limit`);
  }
  return tplLabels;
}
function quantity(q) {
  const m = /^([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$/.exec(String(q));
  if (!m) return NaN;
  const mult = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60, m: 1e-3, k: 1e3, M: 1e6,
    G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
  return parseFloat(m[1]) * (m[2] ? mult[m[2]] : 1);
}

const workloads = [];
function workloadCheck(o, where) {
  const spec = o.spec || {};
  const sel = (spec.selector && spec.selector.matchLabels) || {};
  const tl = (spec.template && spec.template.metadata && spec.template.metadata.labels) || {};
  for (const [k, v] of Object.entries(sel)) if (tl[k] !== v) fail(where, `selector ${k}=${v} does not match the pod template`);
  podCheck(spec.template && spec.template.spec, where, tl);
  workloads.push(o);
  const labels = o.metadata.labels || {};
  if (o.kind === "Deployment" && labels["app.kubernetes.io/component"] === "worker") stageRules(o, where);
}
function stageRules(o, where) { // what the issue asks of every per-stage Deployment
  const s = o.spec, ps = s.template.spec;
  if (s.replicas !== 1) fail(where, "stage: replicas must be 1");
  if (!s.strategy || s.strategy.type !== "Recreate") fail(where, "stage: strategy must be Recreate");
  for (const c of ps.containers) {
    const r = c.resources || {};
    if (!r.requests || !r.limits || !r.requests.memory || r.requests.memory !== r.limits.memory)
      fail(where, "stage: memory request must equal the limit");
    if (!c.readinessProbe || !c.livenessProbe) fail(where, "stage: readiness and liveness probes are needed");
  }
  const terms = (((ps.affinity || {}).nodeAffinity || {}).requiredDuringSchedulingIgnoredDuringExecution || {})
    .nodeSelectorTerms || [];
  const pinned = terms.length === 1 && (terms[0].matchExpressions || []).some((e) =>
    e.key === "kubernetes.io/hostname" && e.operator === "In" && (e.values || []).length === 1);
  if (!pinned) fail(where, "stage: required node affinity on kubernetes.io/hostname");
  for (const l of ["seifer.dev/model", "seifer.dev/pipeline", "seifer.dev/stage", "seifer.dev/plan-generation"])
    if (!(l in o.metadata.labels)) fail(where, `stage: label ${l} is missing`);
}
function serviceRefs() { // a Service's selector and named target ports meet a workload
  for (const o of allObjects.filter((x) => x.kind === "Service")) {
    const where = `Service ${o.metadata.name}`;
    const sel = o.spec.selector || {};
    const w = workloads.find((d) => d.metadata.namespace === o.metadata.namespace &&
      Object.entries(sel).every(([k, v]) => ((d.spec.template.metadata || {}).labels || {})[k] === v));
    if (!w) {
      fail(where, "its selector matches no workload");
      continue;
    }
    const names = new Set(w.spec.template.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name)));
    for (const p of o.spec.ports || [])
      if (typeof p.targetPort === "string" && !names.has(p.targetPort)) fail(where, `targetPort "${p.targetPort}" is not a container port`);
  }
}

// ---- files ---------------------------------------------------------------------------------------------
const args = process.argv.slice(2);
const files = [];
let dirOrder = null;
const crdFiles = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--crd") crdFiles.push(args[++i]);
  else if (args[i] === "--dir-order") dirOrder = args[++i];
  else files.push(args[i]);
}
function load(f) {
  const txt = fs.readFileSync(f, "utf8");
  if (f.endsWith(".json")) {
    const j = JSON.parse(txt);
    return Array.isArray(j) ? j : [j];
  }
  return yaml.loadAll(txt).filter((d) => d !== null && d !== undefined);
}
for (const f of crdFiles) for (const o of load(f)) if (o.kind === "CustomResourceDefinition") addCrd(o, `${f} CRD`);

const allObjects = [];
for (const f of files) {
  let objs;
  try {
    objs = load(f);
  } catch (e) {
    fail(f, `does not parse: ${e.message}`);
    continue;
  }
  for (const o of objs) {
    const where = `${path.basename(f)} ${o && o.kind}/${o && o.metadata && o.metadata.name}`;
    checked++;
    if (!o || typeof o !== "object" || !o.apiVersion || !o.kind || !o.metadata) {
      fail(where, "not a Kubernetes object (apiVersion, kind, metadata)");
      continue;
    }
    allObjects.push(o);
    const before = failures;
    metaCheck(o, where);
    if (!(await officialCheck(o, where)) && !crdCheck(o, where)) fail(where, `unknown kind ${o.apiVersion} ${o.kind}`);
    if (o.kind === "Deployment" || o.kind === "DaemonSet") workloadCheck(o, where);
    if (o.kind === "Pod") podCheck(o.spec, where);
    if (o.kind === "CustomResourceDefinition") addCrd(o, where);
    if (failures === before) console.log(`ok   ${where}`);
  }
}
serviceRefs();

// `kubectl apply -f DIR` applies the files in name order: each namespace and CRD must come before
// what needs it, and custom resources cannot be in the same run as their CRD (discovery is done first).
if (dirOrder) {
  const seenNs = new Set(), seenCrd = new Set();
  for (const f of fs.readdirSync(dirOrder).filter((x) => /\.(ya?ml|json)$/.test(x)).sort()) {
    for (const o of load(path.join(dirOrder, f))) {
      if (o.kind === "Namespace") seenNs.add(o.metadata.name);
      if (o.kind === "CustomResourceDefinition") seenCrd.add(`${o.spec.group}/${o.spec.names.kind}`);
      if (NAMESPACED.has(o.kind) && !seenNs.has(o.metadata.namespace))
        fail(`${f} ${o.kind}/${o.metadata.name}`, `namespace ${o.metadata.namespace} is created in no earlier file`);
      const g = o.apiVersion.split("/")[0];
      if ([...seenCrd].some((c) => c === `${g}/${o.kind}`))
        fail(`${f} ${o.kind}/${o.metadata.name}`, "a custom resource in the same kubectl run as its CRD fails");
    }
  }
  console.log(`ok   ${dirOrder}: file order works for kubectl apply -f`);
}

console.log(`k8s_validate: ${checked} objects, ${failures} problems`);
process.exit(failures ? 1 : 0);
