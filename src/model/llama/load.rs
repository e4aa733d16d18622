//! The model's weights under Hugging Face's names: built from a checkpoint's tensors (or
//! random ones) and named back for saving, and what changes them before serving: new
//! vocabulary rows, quantization.

use candle_core::{DType, Device, Tensor};

use super::{Attention, Block, Llama, Mlp};
use crate::error::{Error, Result};
use crate::model::config::LlamaConfig;
use crate::model::proj::{Proj, Quantization};
use crate::model::rope::Rope;
use crate::model::weights::TensorStore;

impl Llama {
    /// Builds the model from a checkpoint's tensors, named as Hugging Face names them.
    ///
    /// With `quantization`, each projection is quantized as soon as it is read, so at
    /// most one dense weight exists at a time. The output head is not: the vocabulary may
    /// still grow (`grow_vocab`), so [`Llama::quantize`] quantizes it afterwards, and
    /// marks the model quantized.
    pub fn load(
        cfg: LlamaConfig,
        store: &TensorStore,
        device: &Device,
        quantization: Option<Quantization>,
    ) -> Result<Self> {
        let linear = |w: Tensor| -> Result<Proj> {
            let mut p = Proj::dense(w);
            if let Some(q) = quantization {
                p.quantize(q)?;
            }
            Ok(p)
        };
        let d = cfg.hidden_size;
        let hd = cfg.head_dim();
        let (h, kvh, ff, v) = (
            cfg.num_attention_heads,
            cfg.num_kv_heads(),
            cfg.intermediate_size,
            cfg.vocab_size,
        );
        let embed = store.get("model.embed_tokens.weight", &[v, d])?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let get = |n: &str, shape: &[usize]| store.get(&format!("{p}.{n}"), shape);
            blocks.push(Block {
                input_norm: get("input_layernorm.weight", &[d])?,
                attn: Attention {
                    q: linear(get("self_attn.q_proj.weight", &[h * hd, d])?)?,
                    k: linear(get("self_attn.k_proj.weight", &[kvh * hd, d])?)?,
                    v: linear(get("self_attn.v_proj.weight", &[kvh * hd, d])?)?,
                    o: linear(get("self_attn.o_proj.weight", &[d, h * hd])?)?,
                },
                post_norm: get("post_attention_layernorm.weight", &[d])?,
                mlp: Mlp {
                    gate: linear(get("mlp.gate_proj.weight", &[ff, d])?)?,
                    up: linear(get("mlp.up_proj.weight", &[ff, d])?)?,
                    down: linear(get("mlp.down_proj.weight", &[d, ff])?)?,
                },
            });
        }
        let norm = store.get("model.norm.weight", &[d])?;
        // Some tied checkpoints still store lm_head.weight; trust the config's flag.
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(store.get("lm_head.weight", &[v, d])?)
        };
        let rope = Rope::new(&cfg, device)?;
        Ok(Llama {
            cfg,
            device: device.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            rope,
            differentiable: false,
            fused_attention: true,
            quantization: None,
            head_q: None,
            trained_rows: None,
        })
    }

    /// A randomly initialised model (normal(0, 0.02) weights, unit norms), for from-scratch
    /// training and tests.
    pub fn random(cfg: LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate().map_err(Error::invalid)?;
        // The random values are drawn into vectors, then copied into the model's tensors.
        cfg.check_fits_memory(8)?;
        let tensors = random_tensors(&cfg, seed)?;
        let mut store_map = std::collections::HashMap::new();
        for (name, t) in tensors {
            store_map.insert(name, t);
        }
        Self::from_named(cfg, store_map, device)
    }

    /// Builds the model from an in-memory map of Hugging Face-named tensors.
    pub fn from_named(
        cfg: LlamaConfig,
        tensors: std::collections::HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let store = TensorStore::from_map(tensors);
        Self::load(cfg, &store, device, None)
    }

    /// Hugging Face-named tensors, for saving a checkpoint or training. A quantized model
    /// has no dense weights left to give.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        if let Some(q) = self.quantization {
            return Err(Error::invalid(format!(
                "the model is quantized ({q}) for serving: it cannot be saved or trained; \
                 load the checkpoint without quantization"
            )));
        }
        let embed = match &self.trained_rows {
            Some(rows) => rows.table(&self.embed)?,
            None => self.embed.clone(),
        };
        let mut out = vec![
            ("model.embed_tokens.weight".to_string(), embed),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), head.clone()));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), b.input_norm.clone()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                b.post_norm.clone(),
            ));
            for (n, proj) in b.projections() {
                let name = format!("{p}.{n}.weight");
                // Adapters are merged: a saved checkpoint serves without them.
                let t = proj
                    .merged_weight()?
                    .ok_or_else(|| Error::invalid(format!("{name} is quantized")))?;
                out.push((name, t));
            }
        }
        Ok(out)
    }

    /// Quantizes every projection and the output head for serving (the embedding table
    /// stays f32: it feeds patches and inputs). Projections `load` already quantized to
    /// `q` are kept. A weight whose input width is not a multiple of the block size stays
    /// dense; returns how many weights are quantized out of how many.
    pub fn quantize(&mut self, q: Quantization) -> Result<(usize, usize)> {
        if self.quantization.is_some() {
            return Err(Error::invalid("the model is already quantized"));
        }
        let (mut done, mut total) = (0, 0);
        for b in &mut self.blocks {
            for p in [
                &mut b.attn.q,
                &mut b.attn.k,
                &mut b.attn.v,
                &mut b.attn.o,
                &mut b.mlp.gate,
                &mut b.mlp.up,
                &mut b.mlp.down,
            ] {
                total += 1;
                done += usize::from(p.quantize(q)?);
            }
        }
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        self.head_q = Proj::quantized(head, q)?;
        total += 1;
        done += usize::from(self.head_q.is_some());
        // An untied head has no other use: drop the dense copy.
        if self.head_q.is_some() {
            self.lm_head = None;
        }
        self.quantization = Some(q);
        Ok((done, total))
    }

    pub fn quantization(&self) -> Option<Quantization> {
        self.quantization
    }

    /// Moves every dense, unadapted f32 projection into the kernel's panel layout
    /// (`skinny::Panels`), where decode passes of 20-32 rows ran 1.3-1.6x faster than
    /// over the weights as stored (docs/PERFORMANCE.md, "Panels"). The same values: the
    /// dense weights come back exactly for saving and training ([`Llama::named_tensors`],
    /// [`Llama::unpack_panels`]). Returns how many projections moved; none where the CPU
    /// lacks the panel kernel or the model is not on the CPU.
    pub fn pack_panels(&mut self) -> Result<usize> {
        let mut moved = 0;
        for b in &mut self.blocks {
            for (_, p) in b.projections_mut() {
                moved += usize::from(p.pack_panels()?);
            }
        }
        Ok(moved)
    }

    /// Puts every f32 panel projection back into the dense layout (exactly): training
    /// and LoRA need the weights as tensors.
    pub fn unpack_panels(&mut self) -> Result<()> {
        for b in &mut self.blocks {
            for (_, p) in b.projections_mut() {
                p.unpack_panels()?;
            }
        }
        Ok(())
    }

    /// Adds `n` rows to the vocabulary (new special tokens). Each new row is the mean of
    /// the existing rows, for the input table and for an untied head alike, so a new token
    /// starts as the "average token" rather than as noise.
    pub fn grow_vocab(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if self.quantization.is_some() {
            return Err(Error::invalid(
                "cannot grow the vocabulary of a quantized model",
            ));
        }
        let grow = |t: &Tensor| -> Result<Tensor> {
            let mean = t.mean_keepdim(0)?;
            let rows = mean.broadcast_as((n, t.dim(1)?))?;
            Ok(Tensor::cat(&[t, &rows.contiguous()?], 0)?)
        };
        self.embed = grow(&self.embed)?;
        if let Some(head) = &self.lm_head {
            self.lm_head = Some(grow(head)?);
        }
        self.cfg.vocab_size += n;
        Ok(())
    }
}

/// Normal(0, 0.02) matrices and unit norms, named as Hugging Face names them.
fn random_tensors(cfg: &LlamaConfig, seed: u64) -> Result<Vec<(String, Tensor)>> {
    use rand::{rngs::StdRng, SeedableRng};
    use rand_distr::{Distribution, Normal};
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 0.02).expect("valid normal");
    let cpu = Device::Cpu;
    let mut mat = |rows: usize, cols: usize| -> Result<Tensor> {
        let data: Vec<f32> = (0..rows * cols).map(|_| normal.sample(&mut rng)).collect();
        Ok(Tensor::from_vec(data, (rows, cols), &cpu)?)
    };
    let ones = |n: usize| Tensor::ones(n, DType::F32, &cpu);
    let (d, hd, h, kvh, ff, v) = (
        cfg.hidden_size,
        cfg.head_dim(),
        cfg.num_attention_heads,
        cfg.num_kv_heads(),
        cfg.intermediate_size,
        cfg.vocab_size,
    );
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), mat(v, d)?),
        ("model.norm.weight".to_string(), ones(d)?),
    ];
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), mat(v, d)?));
    }
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), ones(d)?));
        out.push((format!("{p}.post_attention_layernorm.weight"), ones(d)?));
        out.push((format!("{p}.self_attn.q_proj.weight"), mat(h * hd, d)?));
        out.push((format!("{p}.self_attn.k_proj.weight"), mat(kvh * hd, d)?));
        out.push((format!("{p}.self_attn.v_proj.weight"), mat(kvh * hd, d)?));
        out.push((format!("{p}.self_attn.o_proj.weight"), mat(d, h * hd)?));
        out.push((format!("{p}.mlp.gate_proj.weight"), mat(ff, d)?));
        out.push((format!("{p}.mlp.up_proj.weight"), mat(ff, d)?));
        out.push((format!("{p}.mlp.down_proj.weight"), mat(d, ff)?));
    }
    Ok(out)
}
