/**
 * Instances that run in this tab: moved here from the server (its snapshot
 * downloaded, resumed in a Web Worker under the same instance id) and back
 * (suspended here, the snapshot uploaded and launched there), through the
 * documented API only (docs/browser.md, "Migration").
 */
import {
  connectOrigin,
  DEFAULT_SERVER_LIMITS,
  instanceServices,
  Runtime,
  WorkerExecutor,
  type InstanceServices,
  type OriginPipe,
  type RunningInstance,
} from '../browser/index.js';
import type { GateApi, Status } from './api.js';

export interface TabInstance {
  id: string;
  /** Where the program's output goes; replaced when a terminal attaches. */
  onData: (chunk: Uint8Array) => void;
  onEnd: (why: string) => void;
  readonly status: Status;
  send(data: Uint8Array): void;
}

interface Entry {
  inst: RunningInstance<InstanceServices>;
  pipe: OriginPipe;
  view: TabInstance;
  status: Status;
}

export class Tab {
  private runtime?: Runtime;
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly api: GateApi) {}

  list(): TabInstance[] {
    return [...this.entries.values()].map((e) => e.view);
  }

  get(id: string): TabInstance | undefined {
    return this.entries.get(id)?.view;
  }

  private rt(): Runtime {
    // The executor worker is gate-executor-worker.js next to console.js.
    this.runtime ??= new Runtime({ executor: new WorkerExecutor(), memoryLimitPages: 4096, timeResolutionNs: 1000, limits: DEFAULT_SERVER_LIMITS });
    return this.runtime;
  }

  /**
   * Moves a server instance here. The server's copy is deleted only once
   * this one runs; on any failure before that it is resumed there.
   */
  async moveIn(id: string): Promise<TabInstance> {
    await this.api.act(id, 'suspend', 'wait');
    let entry: Entry;
    try {
      const bytes = await this.api.download(await this.api.snapshot(id));
      entry = await this.start(id, bytes);
    } catch (e) {
      await this.api.act(id, 'resume').catch(() => undefined);
      throw e;
    }
    await this.api.act(id, 'delete');
    return entry.view;
  }

  /** Moves an instance of this tab to the server under the same id; on failure it runs on here. */
  async moveOut(id: string): Promise<void> {
    const e = this.entries.get(id);
    if (!e) throw new Error(`instance ${id} is not in this tab`);
    e.inst.suspend();
    await e.inst.wait();
    await e.pipe.done.catch(() => undefined);
    const bytes = await e.inst.snapshot();
    e.inst.release();
    this.entries.delete(id);
    try {
      const hash = await this.api.upload(bytes);
      await this.api.launch(hash, { instance: id });
    } catch (err) {
      const again = await this.start(id, bytes);
      again.view.onData = e.view.onData;
      again.view.onEnd = e.view.onEnd;
      throw err;
    }
  }

  private async start(id: string, bytes: Uint8Array): Promise<Entry> {
    const runtime = this.rt();
    const inst = await runtime.launch(await runtime.load(bytes), {
      instanceId: id,
      retain: true,
      services: instanceServices({ principalId: 'console' }),
    });
    const status: Status = { state: 'RUNNING' };
    const view: TabInstance = {
      id,
      onData: () => undefined,
      onEnd: () => undefined,
      status,
      send: (data) => entry.pipe.send(data),
    };
    const pipe = connectOrigin(inst.services.origin, (chunk) => view.onData(chunk));
    const entry: Entry = { inst, pipe, view, status };
    this.entries.set(id, entry);
    void inst.wait().then((s) => {
      Object.assign(status, { state: s.state, cause: s.cause, result: s.result, error: s.error });
      if (this.entries.get(id) === entry && s.state !== 'SUSPENDED') view.onEnd(s.state);
    });
    return entry;
  }

  /** Stops an instance of this tab for good. */
  async kill(id: string): Promise<void> {
    const e = this.entries.get(id);
    if (!e) return;
    e.inst.kill();
    await e.inst.wait();
    e.inst.release();
    this.entries.delete(id);
  }

}
