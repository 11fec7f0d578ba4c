import { memoryInventory } from '../../src/store/memory.js';
import { inventoryConformance } from './conformance.js';

inventoryConformance('memory', async () => memoryInventory());
