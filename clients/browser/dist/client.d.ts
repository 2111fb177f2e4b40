import type { Tessera, TesseraOptions } from './types';
export declare function createTessera(options?: TesseraOptions): Tessera;
