export { runKill as run } from './ps.js';
