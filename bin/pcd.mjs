#!/usr/bin/env node
// The `pcd` command: bin/pcd.ts, from the bundle of `npm run build` while it is
// fresh, else from the TypeScript sources through tsx (launch/launch.mjs).
import { launch } from '../launch/launch.mjs';

await launch('pcd');
