/** Prometheus metrics of one server (served at /metrics). */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'status'>;

  constructor(running: () => number) {
    collectDefaultMetrics({ register: this.registry, prefix: 'gate_process_' });
    this.requests = new Counter({
      name: 'gate_http_requests_total',
      help: 'HTTP requests answered, by method and status',
      labelNames: ['method', 'status'],
      registers: [this.registry],
    });
    new Gauge({
      name: 'gate_instances_running',
      help: 'Program instances currently running',
      registers: [this.registry],
      collect() {
        this.set(running());
      },
    });
  }
}
