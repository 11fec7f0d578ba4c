import { instanceServices, type InstanceServices } from '../service/provider.js';
import type { ServiceProvider } from '../runtime/runtime.js';

/** Services of a local `gate call`: the built-ins, for the local principal. */
export function createLocalServices(): ServiceProvider<InstanceServices> {
  return instanceServices({ principalId: 'local' });
}
