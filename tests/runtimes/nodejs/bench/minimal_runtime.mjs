// Baseline for bench_overhead.py: the least a Node runtime can do per invoke
// (GET /next, JSON.parse, call the handler, JSON.stringify, POST /response) over one
// keep-alive socket, with none of Lambda's semantics.
import http from 'node:http';

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const handler = async (event) => null;

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

for (;;) {
  const next = await call('GET', '/2018-06-01/runtime/invocation/next');
  const id = next.headers['lambda-runtime-aws-request-id'];
  const result = await handler(JSON.parse(next.body));
  await call('POST', `/2018-06-01/runtime/invocation/${id}/response`, JSON.stringify(result ?? null));
}
