#include "model/model_stats.h"

namespace tandem {

ModelStats model_stats(const Model& m) {
    const HParams& h = m.hparams();
    const GgufFile& f = m.file();
    ModelStats s;
    for (const auto& t : f.tensors()) {
        double frac = 1.0;
        const bool expert = t.name.find("_exps.") != std::string::npos;
        if (expert) frac = (double)h.n_expert_used / (double)h.n_expert;
        if (t.name == tn::kTokenEmbd && f.tensor(tn::kOutput)) frac = 1.0 / (double)h.n_vocab;
        s.total_bytes += (double)t.n_bytes;
        s.n_params += (double)t.n_elements();
        s.active_bytes += frac * (double)t.n_bytes;
        s.active_params += frac * (double)t.n_elements();
        if (expert) s.active_expert_bytes += frac * (double)t.n_bytes;
    }
    return s;
}

}  // namespace tandem
