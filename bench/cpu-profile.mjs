// @ts-check
// A CPU profile of the whole process, written when it exits: what `node --cpu-prof` does, for
// processes started through NODE_OPTIONS, where Node does not accept --cpu-prof.
//
//   NODE_OPTIONS="--import=/path/to/bench/cpu-profile.mjs" BENCH_CPU_PROFILE=/path/out.cpuprofile node ...

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const file = process.env.BENCH_CPU_PROFILE;
if (file) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  // A session in the same thread answers synchronously, so this runs to its end inside 'exit'.
  process.on('exit', () => {
    session.post('Profiler.stop', (error, result) => {
      if (!error) writeFileSync(file, JSON.stringify(result.profile));
    });
  });
}
