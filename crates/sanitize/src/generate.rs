//! A generator of new Synthea-schema tables (patients, encounters, conditions, observations and
//! the organizations, providers and payers they refer to) with consistent foreign keys and
//! synthetic values, for benchmarks at any size. Nothing is copied from real rows: names,
//! addresses and identifiers are drawn from small syllable and word lists with a seeded generator.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::transform::{civil_from_days as date, SplitMix};
use crate::SanitizeError;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenerateSpec {
    /// Stop after this many patients (each with their encounters, conditions, observations).
    pub patients: Option<u64>,
    /// Stop once the tables hold at least this many bytes.
    pub target_bytes: Option<u64>,
    /// Seed of every choice.
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct GenerateStats {
    /// Patients written.
    pub patients: u64,
    /// Encounters written.
    pub encounters: u64,
    /// Conditions written.
    pub conditions: u64,
    /// Observations written.
    pub observations: u64,
    /// Bytes written in all tables.
    pub bytes: u64,
}

const SYLL: [&str; 24] = [
    "ka", "ri", "mo", "te", "la", "sun", "vel", "dor", "an", "mi", "ro", "bel", "tan", "is", "wen",
    "gor", "li", "na", "pe", "zu", "har", "lo", "fen", "qui",
];
const STREET: [&str; 10] = [
    "Road", "Street", "Lane", "Avenue", "Court", "Way", "Drive", "Path", "Place", "Row",
];
const CITY: [(&str, &str, &str); 8] = [
    ("Northfield", "Hampden County", "01060"),
    ("Eastbrook", "Essex County", "01915"),
    ("Westmoor", "Worcester County", "01520"),
    ("Southport", "Norfolk County", "02081"),
    ("Millbrook", "Middlesex County", "01852"),
    ("Lakeside", "Bristol County", "02720"),
    ("Harborview", "Suffolk County", "02128"),
    ("Pinehill", "Plymouth County", "02360"),
];
const RACE: [&str; 5] = ["white", "black", "asian", "native", "other"];
const MARITAL: [&str; 4] = ["M", "S", "D", "W"];
const CLASSES: [(&str, &str, &str); 5] = [
    (
        "wellness",
        "162673000",
        "General examination of patient (procedure)",
    ),
    ("ambulatory", "185345009", "Encounter for symptom"),
    (
        "outpatient",
        "185349003",
        "Encounter for check up (procedure)",
    ),
    (
        "emergency",
        "50849002",
        "Emergency room admission (procedure)",
    ),
    ("inpatient", "32485007", "Hospital admission"),
];
const CONDITIONS: [(&str, &str); 8] = [
    ("195662009", "Acute viral pharyngitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
    ("444814009", "Viral sinusitis (disorder)"),
    ("65363002", "Otitis media"),
    ("15777000", "Prediabetes"),
    ("59621000", "Essential hypertension (disorder)"),
    ("40055000", "Chronic sinusitis (disorder)"),
    ("72892002", "Normal pregnancy"),
];
/// Essential hypertension: each patient has it or not, with the prevalence by age and sex that
/// NHANES 2017-2018 measured among US adults (Ostchega et al., NCHS Data Brief 364, 2020, 2017
/// ACC/AHA definition): 22.4% at 18-39, 54.5% at 40-59, 74.5% at 60 and over; men 51.0%, women
/// 39.7% overall (taken here as a factor of 1.13 and 0.88 on the age band). Under 18: 4%
/// (paediatric estimates run 3-5%). Every other condition is drawn independently of the patient,
/// so what a model can learn about hypertension from age and sex is this dependence.
const HYPERTENSION: usize = 5;

/// The probability that a patient aged `age` (years, at the reference year) has hypertension.
fn hypertension_prevalence(age: i64, male: bool) -> f64 {
    let band: f64 = match age {
        ..=17 => 0.04,
        18..=39 => 0.224,
        40..=59 => 0.545,
        _ => 0.745,
    };
    (band * if male { 1.13 } else { 0.88 }).min(0.95)
}

const VITALS: [(&str, &str, &str, f64, f64); 8] = [
    ("8302-2", "Body Height", "cm", 150.0, 40.0),
    ("29463-7", "Body Weight", "kg", 55.0, 40.0),
    (
        "39156-5",
        "Body mass index (BMI) [Ratio]",
        "kg/m2",
        19.0,
        12.0,
    ),
    ("8462-4", "Diastolic Blood Pressure", "mm[Hg]", 65.0, 30.0),
    ("8480-6", "Systolic Blood Pressure", "mm[Hg]", 105.0, 45.0),
    ("8867-4", "Heart rate", "/min", 55.0, 45.0),
    ("9279-1", "Respiratory rate", "/min", 12.0, 6.0),
    (
        "72514-3",
        "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        "{score}",
        0.0,
        10.0,
    ),
];
const SMOKING: [&str; 3] = [
    "Never smoked tobacco (finding)",
    "Former smoker (finding)",
    "Current every day smoker (finding)",
];

struct Gen {
    r: SplitMix,
}

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.r.next_u64() % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        xs.get(usize::try_from(self.below(xs.len() as u64)).unwrap_or(0))
    }
    fn unit(&mut self) -> f64 {
        (self.r.signed_unit() + 1.0) / 2.0
    }
    fn uuid(&mut self, out: &mut String) {
        use std::fmt::Write as _;
        let a = self.r.next_u64();
        let b = self.r.next_u64();
        let _ = write!(
            out,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        );
    }
    fn word(&mut self, syllables: u64) -> String {
        let mut s = String::new();
        for _ in 0..syllables {
            s.push_str(self.pick(&SYLL).copied().unwrap_or("ka"));
        }
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    }
    fn name(&mut self) -> String {
        let syl = 2 + self.below(2);
        let w = self.word(syl);
        format!("{w}{}", self.below(1000))
    }
}

struct Out {
    w: BufWriter<File>,
    bytes: u64,
    path: std::path::PathBuf,
}

impl Out {
    fn create(dir: &Path, name: &str, header: &str) -> Result<Self, SanitizeError> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(|e| SanitizeError::io(&path, "cannot create", e))?;
        let mut o = Self {
            w: BufWriter::with_capacity(1 << 20, f),
            bytes: 0,
            path,
        };
        o.line(header)?;
        Ok(o)
    }
    fn line(&mut self, s: &str) -> Result<(), SanitizeError> {
        self.w
            .write_all(s.as_bytes())
            .and_then(|()| self.w.write_all(b"\n"))
            .map_err(|e| SanitizeError::io(&self.path, "cannot write", e))?;
        self.bytes += s.len() as u64 + 1;
        Ok(())
    }
    fn finish(mut self) -> Result<u64, SanitizeError> {
        self.w
            .flush()
            .map_err(|e| SanitizeError::io(&self.path, "cannot write", e))?;
        Ok(self.bytes)
    }
}

/// Patients generated together: their rows are interleaved in each table, as in Synthea's own
/// output, where one patient's rows come in runs, not all together.
const BATCH_PATIENTS: usize = 8;
/// Mean length of a run of one patient's consecutive rows, per table, as in the shipped Synthea
/// tables (`shared/data/synthea`: encounters 8.6, conditions 9.4, observations 51.8).
const ENCOUNTER_RUN: u64 = 9;
const CONDITION_RUN: u64 = 9;
const OBSERVATION_RUN: u64 = 52;

/// One table's rows for the patients of a batch, each patient's in order.
struct Batch {
    rows: Vec<std::collections::VecDeque<String>>,
    bytes: u64,
}

impl Batch {
    fn new() -> Self {
        Self {
            rows: Vec::new(),
            bytes: 0,
        }
    }
    fn patients(&self) -> usize {
        self.rows.len()
    }
    fn start_patient(&mut self) {
        self.rows.push(std::collections::VecDeque::new());
    }
    fn line(&mut self, s: &str) {
        self.bytes += s.len() as u64 + 1;
        if let Some(r) = self.rows.last_mut() {
            r.push_back(s.to_owned());
        }
    }
    /// Writes the batch: runs of one patient's rows (length uniform in 1..2*mean, so `mean` on
    /// average), each from a patient chosen at random among those with rows left.
    fn write(&mut self, g: &mut Gen, out: &mut Out, mean_run: u64) -> Result<(), SanitizeError> {
        loop {
            let open: Vec<usize> = (0..self.rows.len())
                .filter(|&i| self.rows.get(i).is_some_and(|r| !r.is_empty()))
                .collect();
            let Some(&i) = g.pick(&open) else { break };
            let run = 1 + g.below(2 * mean_run - 1);
            for _ in 0..run {
                let Some(l) = self
                    .rows
                    .get_mut(i)
                    .and_then(std::collections::VecDeque::pop_front)
                else {
                    break;
                };
                out.line(&l)?;
            }
        }
        self.rows.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// Writes the tables into `dir` (created if needed).
#[allow(
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]
pub fn generate(dir: &Path, spec: GenerateSpec) -> Result<GenerateStats, SanitizeError> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir)
        .map_err(|e| SanitizeError::io(dir, "cannot create directory", e))?;
    let mut g = Gen {
        r: SplitMix::new(spec.seed ^ 0x005e_ed0f_5a17),
    };
    let mut stats = GenerateStats::default();

    let mut orgs = Out::create(
        dir,
        "organizations.csv",
        "Id,NAME,ADDRESS,CITY,STATE,ZIP,LAT,LON,PHONE,REVENUE,UTILIZATION",
    )?;
    let mut org_ids = Vec::new();
    for _ in 0..60 {
        let mut id = String::new();
        g.uuid(&mut id);
        let (city, _, zip) = *g.pick(&CITY).unwrap_or(&CITY[0]);
        let line = format!(
            "{id},{} Medical Center,{} {} {},{city},MA,{zip},{:.6},{:.6},{}-{}-{},0.0,{}",
            g.word(2),
            1 + g.below(999),
            g.word(2),
            g.pick(&STREET).copied().unwrap_or("Road"),
            41.5 + g.unit(),
            -72.5 + g.unit() * 2.0,
            200 + g.below(700),
            200 + g.below(700),
            1000 + g.below(9000),
            g.below(500)
        );
        orgs.line(&line)?;
        org_ids.push(id);
    }
    let mut provs = Out::create(dir, "providers.csv", "Id,ORGANIZATION,NAME,GENDER,SPECIALITY,ADDRESS,CITY,STATE,ZIP,LAT,LON,ENCOUNTERS,PROCEDURES")?;
    let mut prov: Vec<(String, String)> = Vec::new();
    for i in 0..240 {
        let mut id = String::new();
        g.uuid(&mut id);
        let org = org_ids.get(i % org_ids.len()).cloned().unwrap_or_default();
        let (city, _, zip) = *g.pick(&CITY).unwrap_or(&CITY[0]);
        let line = format!(
            "{id},{org},{} {},{},GENERAL PRACTICE,{} {} {},{city},MA,{zip},{:.6},{:.6},{},0",
            g.name(),
            g.name(),
            if g.below(2) == 0 { "F" } else { "M" },
            1 + g.below(999),
            g.word(2),
            g.pick(&STREET).copied().unwrap_or("Road"),
            41.5 + g.unit(),
            -72.5 + g.unit() * 2.0,
            g.below(2000)
        );
        provs.line(&line)?;
        prov.push((id, org));
    }
    let mut payers = Out::create(
        dir,
        "payers.csv",
        "Id,NAME,OWNERSHIP,ADDRESS,CITY,STATE_HEADQUARTERED,ZIP,PHONE,AMOUNT_COVERED,AMOUNT_UNCOVERED,REVENUE,COVERED_ENCOUNTERS,UNCOVERED_ENCOUNTERS,COVERED_MEDICATIONS,UNCOVERED_MEDICATIONS,COVERED_PROCEDURES,UNCOVERED_PROCEDURES,COVERED_IMMUNIZATIONS,UNCOVERED_IMMUNIZATIONS,UNIQUE_CUSTOMERS,QOLS_AVG,MEMBER_MONTHS",
    )?;
    let mut payer_ids = Vec::new();
    for _ in 0..10 {
        let mut id = String::new();
        g.uuid(&mut id);
        let line = format!(
            "{id},{} Health,PRIVATE,{} {} {},Boston,MA,02110,1-800-{}-{},{:.2},{:.2},{:.2},{},0,{},0,{},0,{},0,{},{:.15},{}",
            g.word(2),
            1 + g.below(999),
            g.word(2),
            g.pick(&STREET).copied().unwrap_or("Road"),
            200 + g.below(700),
            1000 + g.below(9000),
            g.unit() * 1e6,
            g.unit() * 1e5,
            g.unit() * 1e5,
            g.below(500),
            g.below(500),
            g.below(500),
            g.below(100),
            g.below(50),
            g.unit(),
            g.below(1000)
        );
        payers.line(&line)?;
        payer_ids.push(id);
    }
    let fixed = orgs.finish()? + provs.finish()? + payers.finish()?;

    let mut pats = Out::create(
        dir,
        "patients.csv",
        "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,LAST,SUFFIX,MAIDEN,MARITAL,RACE,ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,FIPS,ZIP,LAT,LON,HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE,INCOME",
    )?;
    let mut encs = Out::create(
        dir,
        "encounters.csv",
        "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION",
    )?;
    let mut conds = Out::create(
        dir,
        "conditions.csv",
        "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION",
    )?;
    let mut obs = Out::create(
        dir,
        "observations.csv",
        "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE",
    )?;
    let mut line = String::with_capacity(512);
    let mut pid = String::new();
    let mut eid = String::new();
    let others: Vec<(&str, &str)> = CONDITIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != HYPERTENSION)
        .map(|(_, c)| *c)
        .collect();
    // Rows of the patients in the batch, per table, interleaved when the batch is written.
    let (mut enc_b, mut cond_b, mut obs_b) = (Batch::new(), Batch::new(), Batch::new());
    loop {
        if enc_b.patients() >= BATCH_PATIENTS {
            enc_b.write(&mut g, &mut encs, ENCOUNTER_RUN)?;
            cond_b.write(&mut g, &mut conds, CONDITION_RUN)?;
            obs_b.write(&mut g, &mut obs, OBSERVATION_RUN)?;
        }
        if spec.patients.is_some_and(|n| stats.patients >= n) {
            break;
        }
        let total = fixed
            + pats.bytes
            + encs.bytes
            + conds.bytes
            + obs.bytes
            + enc_b.bytes
            + cond_b.bytes
            + obs_b.bytes;
        if spec.target_bytes.is_some_and(|t| total >= t)
            || (spec.patients.is_none() && spec.target_bytes.is_none())
        {
            break;
        }
        stats.patients += 1;
        enc_b.start_patient();
        cond_b.start_patient();
        obs_b.start_patient();
        pid.clear();
        g.uuid(&mut pid);
        let birth = -14_600 + g.below(32_000) as i64; // 1930..2017
        let (by, bm, bd) = date(birth);
        let dead = g.below(10) == 0;
        let death = birth + 20_000 + g.below(12_000) as i64;
        let (city, county, zip) = *g.pick(&CITY).unwrap_or(&CITY[0]);
        let gender = if g.below(2) == 0 { "F" } else { "M" };
        // Age at the generator's reference year (days since 1970: 20,400 is late 2025).
        let age = (20_400 - birth) / 365;
        let hypertensive = g.unit() < hypertension_prevalence(age, gender == "M");
        let mut hypertension_recorded = false;
        let address = format!(
            "{} {} {}",
            1 + g.below(999),
            g.word(2),
            g.pick(&STREET).copied().unwrap_or("Road")
        );
        line.clear();
        let _ = write!(line, "{pid},{by:04}-{bm:02}-{bd:02},");
        if dead && death < 20_400 {
            let (y, m, d) = date(death);
            let _ = write!(line, "{y:04}-{m:02}-{d:02}");
        }
        let (first, last) = (g.name(), g.name());
        let _ = write!(
            line,
            ",999-{:02}-{:04},S99{:06},X{:08}X,{},{first},{last},,,{},{},nonhispanic,{gender},{} Massachusetts US,{address},{city},Massachusetts,{county},25{:03},{zip},{:.14},{:.14},{:.2},{:.2},{}",
            10 + g.below(90),
            g.below(10_000),
            g.below(1_000_000),
            g.below(100_000_000),
            if gender == "F" { "Ms." } else { "Mr." },
            g.pick(&MARITAL).copied().unwrap_or("S"),
            g.pick(&RACE).copied().unwrap_or("white"),
            g.pick(&CITY).map_or("Boston", |c| c.0),
            g.below(30),
            41.5 + g.unit(),
            -72.5 + g.unit() * 2.0,
            g.unit() * 1e6,
            g.unit() * 1e5,
            10_000 + g.below(200_000)
        );
        pats.line(&line)?;

        let n_enc = 15 + g.below(40);
        let mut day = birth + g.below(400) as i64;
        let span_end = if dead { death } else { 20_400 };
        let step = ((span_end - day).max(n_enc as i64) / n_enc as i64).max(1);
        let smoker = g.pick(&SMOKING).copied().unwrap_or(SMOKING[0]);
        for ei in 0..n_enc {
            stats.encounters += 1;
            eid.clear();
            g.uuid(&mut eid);
            day += 1 + g.below(step.unsigned_abs() * 2) as i64 / 2;
            let (y, m, d) = date(day);
            let (hh, mi) = (g.below(24), g.below(60));
            let ts = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mi:02}:30Z");
            let (class, code, desc) = *g.pick(&CLASSES).unwrap_or(&CLASSES[0]);
            let (p, o) = g.pick(&prov).cloned().unwrap_or_default();
            let payer = g.pick(&payer_ids).cloned().unwrap_or_default();
            let cost = 50.0 + g.unit() * 200.0;
            // Shipped Synthea: about 0.7 conditions per encounter.
            let has_reason = g.below(10) < 7;
            // A hypertensive patient's first reason is the diagnosis; other reasons are any
            // condition but hypertension, for everyone alike.
            let (rc, rd) = if has_reason && hypertensive && !hypertension_recorded {
                hypertension_recorded = true;
                CONDITIONS[HYPERTENSION]
            } else {
                *g.pick(&others).unwrap_or(&CONDITIONS[0])
            };
            line.clear();
            let _ = write!(
                line,
                "{eid},{ts},{y:04}-{m:02}-{d:02}T{:02}:{mi:02}:30Z,{pid},{o},{p},{payer},{class},{code},{desc},{cost:.2},{cost:.2},{:.2},{},{}",
                (hh + 1) % 24,
                cost * g.unit(),
                if has_reason { rc } else { "" },
                if has_reason { rd } else { "" }
            );
            enc_b.line(&line);
            if has_reason {
                stats.conditions += 1;
                line.clear();
                let stop = if g.below(2) == 0 {
                    let (sy, sm, sd) = date(day + 7 + g.below(30) as i64);
                    format!("{sy:04}-{sm:02}-{sd:02}")
                } else {
                    String::new()
                };
                let _ = write!(line, "{y:04}-{m:02}-{d:02},{stop},{pid},{eid},{rc},{rd}");
                cond_b.line(&line);
            }
            for (code, desc, unit, base, spread) in &VITALS {
                stats.observations += 1;
                line.clear();
                let v = base + g.unit() * spread;
                let _ = write!(
                    line,
                    "{ts},{pid},{eid},vital-signs,{code},{desc},{v:.1},{unit},numeric"
                );
                obs_b.line(&line);
            }
            stats.observations += 1;
            line.clear();
            let _ = write!(
                line,
                "{ts},{pid},{eid},survey,72166-2,Tobacco smoking status,{smoker},,text"
            );
            obs_b.line(&line);
            if ei % 10 == 0 {
                stats.observations += 1;
                line.clear();
                let _ = write!(
                    line,
                    "{ts},{pid},{eid},survey,56799-0,Address,{address},,text"
                );
                obs_b.line(&line);
            }
        }
    }
    enc_b.write(&mut g, &mut encs, ENCOUNTER_RUN)?;
    cond_b.write(&mut g, &mut conds, CONDITION_RUN)?;
    obs_b.write(&mut g, &mut obs, OBSERVATION_RUN)?;
    stats.bytes = fixed + pats.finish()? + encs.finish()? + conds.finish()? + obs.finish()?;
    Ok(stats)
}
