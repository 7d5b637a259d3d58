// The bash completion script of weirctl (proxy/weirctl_completion.bash, embedded at build time by
// proxy/weirctl_completion.cmake): what `weirctl completion bash` prints.
#pragma once

namespace weir {

extern const char kWeirctlCompletionBash[];

}  // namespace weir
