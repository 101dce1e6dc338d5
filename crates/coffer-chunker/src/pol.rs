//! Polynomials over GF(2), port of `polynomials.go` from
//! `github.com/restic/chunker`.

use std::fmt;
use std::ops::{Add, Div, Mul, Rem};
use std::str::FromStr;

use rand::RngCore;

/// A polynomial over GF(2) (`F_2[X]`): bit `i` is the coefficient of `x^i`.
///
/// This is restic's `chunker.Pol`. The repository polynomial is stored in the
/// restic repository config as a lowercase hex string without `0x` prefix,
/// e.g. `"3da3358b4dc173"`; [`Display`](fmt::Display) and [`FromStr`] use
/// exactly that representation.
///
/// Arithmetic is available through the operators `+` (XOR), `*`
/// (carry-less product, panics on overflow like Go's `Mul`), `/` and `%`
/// (polynomial division, panic on division by zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pol(pub u64);

/// Go gives up after this many candidates in `DerivePolynomial`.
const RAND_POL_MAX_TRIES: usize = 1_000_000;

impl Pol {
    /// Degree of the polynomial; `-1` for the zero polynomial.
    #[inline]
    pub const fn deg(self) -> i32 {
        63 - self.0.leading_zeros() as i32
    }

    /// Carry-less product `self * y`, or `None` if it does not fit in 64
    /// bits (where Go's `Mul` panics).
    pub fn checked_mul(self, y: Pol) -> Option<Pol> {
        let (x, y) = (self.0, y.0);
        let mut res: u128 = 0;
        for i in 0..64 {
            if y & (1 << i) != 0 {
                res ^= (x as u128) << i;
            }
        }
        u64::try_from(res).ok().map(Pol)
    }

    /// Quotient and remainder of `self / d`.
    ///
    /// # Panics
    ///
    /// If `d` is zero and `self` is not (as in Go, `0 / 0` is `(0, 0)`).
    pub fn div_mod(self, d: Pol) -> (Pol, Pol) {
        let mut x = self.0;
        if x == 0 {
            return (Pol(0), Pol(0));
        }
        if d.0 == 0 {
            panic!("division by zero");
        }
        let dd = d.deg();
        let mut diff = Pol(x).deg() - dd;
        if diff < 0 {
            return (Pol(0), Pol(x));
        }
        let mut q = 0u64;
        while diff >= 0 {
            q |= 1 << diff;
            x ^= d.0 << diff;
            diff = Pol(x).deg() - dd;
        }
        (Pol(q), Pol(x))
    }

    /// Greatest common divisor of `self` and `f`.
    pub fn gcd(self, f: Pol) -> Pol {
        let (mut x, mut f) = (self, f);
        loop {
            if f.0 == 0 {
                return x;
            }
            if x.0 == 0 {
                return f;
            }
            if x.deg() < f.deg() {
                std::mem::swap(&mut x, &mut f);
            }
            // gcd(x, f) = gcd(f, x mod f)
            let r = x % f;
            x = f;
            f = r;
        }
    }

    /// `self * f mod g`, computed without intermediate overflow.
    ///
    /// Returns the same value as Go's `MulMod` (which panics for some inputs
    /// of degree 63 where this does not).
    ///
    /// # Panics
    ///
    /// If `g` is zero and neither `self` nor `f` is.
    pub fn mul_mod(self, f: Pol, g: Pol) -> Pol {
        if self.0 == 0 || f.0 == 0 {
            return Pol(0);
        }
        let mut a = (self % g).0;
        let top = 1u64 << g.deg();
        let mut res = 0u64;
        let mut f = f.0;
        while f != 0 {
            if f & 1 != 0 {
                res ^= a;
            }
            f >>= 1;
            // a = a * x mod g; deg(a) < deg(g) <= 63, so the shift cannot
            // overflow.
            a <<= 1;
            if a & top != 0 {
                a ^= g.0;
            }
        }
        Pol(res)
    }

    /// Whether the polynomial is irreducible over GF(2), using Ben-Or's
    /// reducibility test exactly like Go's `Pol.Irreducible`.
    ///
    /// Like the Go original this returns `true` for polynomials of degree
    /// less than 2 (including `0` and `1`).
    pub fn is_irreducible(self) -> bool {
        (1..=self.deg() / 2).all(|i| self.gcd(qp(i as u32, self)) == Pol(1))
    }

    /// A new random irreducible polynomial of degree 53 from the operating
    /// system's CSPRNG ([`rand::rngs::OsRng`]), like restic's
    /// `chunker.RandomPolynomial` used by `restic init`.
    ///
    /// # Panics
    ///
    /// If the OS random number generator fails, or (practically impossible)
    /// no irreducible polynomial is found in one million tries.
    pub fn random() -> Pol {
        Pol::derive(&mut rand::rngs::OsRng)
            .expect("unable to find new random irreducible polynomial")
    }

    /// An irreducible polynomial of degree 53 derived from the bytes of
    /// `source`, exactly like Go's `chunker.DerivePolynomial`: each candidate
    /// is read as 8 little-endian bytes, masked to bits 0..=53, and bits 53
    /// and 0 are set. Returns `None` if no irreducible polynomial was found
    /// within one million candidates.
    pub fn derive<R: RngCore + ?Sized>(source: &mut R) -> Option<Pol> {
        for _ in 0..RAND_POL_MAX_TRIES {
            let mut b = [0u8; 8];
            source.fill_bytes(&mut b);
            let mut f = u64::from_le_bytes(b);
            f &= (1 << 54) - 1;
            f |= (1 << 53) | 1;
            if Pol(f).is_irreducible() {
                return Some(Pol(f));
            }
        }
        None
    }
}

/// `(x^(2^p) - x) mod g`, needed by the reducibility test.
fn qp(p: u32, g: Pol) -> Pol {
    // start with x and square p times
    let mut res = Pol(2);
    for _ in 0..p {
        res = res.mul_mod(res, g);
    }
    (res + Pol(2)) % g
}

impl Add for Pol {
    type Output = Pol;

    /// Sum (= difference) in GF(2)\[X\]: XOR.
    #[inline]
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn add(self, y: Pol) -> Pol {
        Pol(self.0 ^ y.0)
    }
}

impl Mul for Pol {
    type Output = Pol;

    /// Carry-less product.
    ///
    /// # Panics
    ///
    /// If the product does not fit in 64 bits (like Go's `Mul`); use
    /// [`Pol::checked_mul`] to avoid that.
    fn mul(self, y: Pol) -> Pol {
        self.checked_mul(y)
            .expect("multiplication would overflow uint64")
    }
}

impl Div for Pol {
    type Output = Pol;

    /// Polynomial quotient, see [`Pol::div_mod`].
    fn div(self, d: Pol) -> Pol {
        self.div_mod(d).0
    }
}

impl Rem for Pol {
    type Output = Pol;

    /// Polynomial remainder, see [`Pol::div_mod`].
    fn rem(self, d: Pol) -> Pol {
        self.div_mod(d).1
    }
}

impl fmt::Display for Pol {
    /// Lowercase hex without `0x`, as stored in restic's repository config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for Pol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Error returned when parsing a [`Pol`] from a string fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsePolError {
    input: String,
}

impl fmt::Display for ParsePolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid chunker polynomial {:?}: expected 1 to 16 hex digits",
            self.input
        )
    }
}

impl std::error::Error for ParsePolError {}

impl FromStr for Pol {
    type Err = ParsePolError;

    /// Parses hex digits (either case, no `0x` prefix, no sign), like
    /// restic's `Pol.UnmarshalJSON` (Go `strconv.ParseUint(s, 16, 64)`).
    fn from_str(s: &str) -> Result<Pol, ParsePolError> {
        let err = || ParsePolError {
            input: s.to_owned(),
        };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        u64::from_str_radix(s, 16).map(Pol).map_err(|_| err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(s: &str) -> Pol {
        Pol(u64::from_str_radix(s, 2).unwrap())
    }

    #[test]
    fn add() {
        let tests = [
            (Pol(23), Pol(16), Pol(23 ^ 16)),
            (
                Pol(0x9a7e30d1e855e0a0),
                Pol(0x670102a1f4bcd414),
                Pol(0xfd7f32701ce934b4),
            ),
            (Pol(0x9a7e30d1e855e0a0), Pol(0x9a7e30d1e855e0a0), Pol(0)),
        ];
        for (x, y, sum) in tests {
            assert_eq!(x + y, sum);
            assert_eq!(y + x, sum);
        }
    }

    #[test]
    fn mul() {
        let tests = [
            (Pol(1), Pol(2), Pol(2)),
            (bin("1101"), bin("10"), bin("11010")),
            (bin("1101"), bin("11"), bin("10111")),
            (Pol(0x40000000), Pol(0x40000000), Pol(0x1000000000000000)),
            (bin("1010"), bin("100100"), bin("101101000")),
            (bin("100"), bin("11"), bin("1100")),
            (bin("11"), bin("110101"), bin("1011111")),
            (bin("10011"), bin("110101"), bin("1100001111")),
        ];
        for (x, y, res) in tests {
            assert_eq!(x * y, res, "{x:?} * {y:?}");
            assert_eq!(y * x, res, "{y:?} * {x:?}");
        }
    }

    #[test]
    #[should_panic(expected = "multiplication would overflow uint64")]
    fn mul_overflow() {
        let _ = Pol(1 << 63) * Pol(2);
    }

    #[test]
    fn checked_mul_overflow() {
        assert_eq!(Pol(1 << 63).checked_mul(Pol(2)), None);
        assert_eq!(Pol(1 << 32).checked_mul(Pol(1 << 32)), None);
        assert_eq!(Pol(1 << 31).checked_mul(Pol(1 << 32)), Some(Pol(1 << 63)));
        assert_eq!(Pol(0).checked_mul(Pol(u64::MAX)), Some(Pol(0)));
    }

    #[test]
    fn div() {
        let tests = [
            (Pol(10), Pol(50), Pol(0)),
            (Pol(0), Pol(1), Pol(0)),
            (bin("101101000"), bin("1010"), bin("100100")),
            (Pol(2), Pol(2), Pol(1)),
            (Pol(0x8000000000000000), Pol(0x8000000000000000), Pol(1)),
            (bin("1100"), bin("100"), bin("11")),
            (bin("1100001111"), bin("10011"), bin("110101")),
        ];
        for (x, y, res) in tests {
            assert_eq!(x / y, res, "{x:?} / {y:?}");
        }
    }

    #[test]
    fn modulo() {
        let tests = [
            (Pol(10), Pol(50), Pol(10)),
            (Pol(0), Pol(1), Pol(0)),
            (bin("101101001"), bin("1010"), bin("1")),
            (Pol(2), Pol(2), Pol(0)),
            (Pol(0x8000000000000000), Pol(0x8000000000000000), Pol(0)),
            (bin("1100"), bin("100"), bin("0")),
            (bin("1100001111"), bin("10011"), bin("0")),
        ];
        for (x, y, res) in tests {
            assert_eq!(x % y, res, "{x:?} % {y:?}");
        }
    }

    #[test]
    #[should_panic(expected = "division by zero")]
    fn div_by_zero() {
        let _ = Pol(5) / Pol(0);
    }

    #[test]
    fn deg() {
        assert_eq!(Pol(0).deg(), -1);
        assert_eq!(Pol(1).deg(), 0);
        for i in 0..64 {
            assert_eq!(Pol(1 << i).deg(), i);
        }
        assert_eq!(Pol(0x3af4b284899).deg(), 41);
    }

    #[test]
    fn gcd() {
        let tests = [
            (Pol(10), Pol(50), Pol(2)),
            (Pol(0), Pol(1), Pol(1)),
            (bin("101101001"), bin("1010"), bin("1")),
            (Pol(2), Pol(2), Pol(2)),
            (bin("1010"), bin("11"), bin("11")),
            (
                Pol(0x8000000000000000),
                Pol(0x8000000000000000),
                Pol(0x8000000000000000),
            ),
            (bin("1100"), bin("101"), bin("11")),
            (bin("1100001111"), bin("10011"), bin("10011")),
            (
                Pol(0x3DA3358B4DC173),
                Pol(0x3DA3358B4DC173),
                Pol(0x3DA3358B4DC173),
            ),
            (Pol(0x3DA3358B4DC173), Pol(0x230d2259defd), Pol(1)),
            (Pol(0x230d2259defd), Pol(0x51b492b3eff2), bin("10011")),
        ];
        for (f1, f2, g) in tests {
            assert_eq!(f1.gcd(f2), g, "gcd({f1:?}, {f2:?})");
            assert_eq!(f2.gcd(f1), g, "gcd({f2:?}, {f1:?})");
        }
    }

    #[test]
    fn mul_mod() {
        let tests = [
            (Pol(0x1230), Pol(0x230), Pol(0x55), Pol(0x22)),
            (
                Pol(0x0eae8c07dbbb3026),
                Pol(0xd5d6db9de04771de),
                Pol(0xdd2bda3b77c9),
                Pol(0x425ae8595b7a),
            ),
        ];
        for (f1, f2, g, res) in tests {
            assert_eq!(f1.mul_mod(f2, g), res);
        }
        // cross-check against the definition for products that fit
        let g = Pol(0x3DA3358B4DC173);
        for (x, y) in [(0x1234567u64, 0x89abcdefu64), (0xffff_ffff, 0xffff_ffff)] {
            assert_eq!(Pol(x).mul_mod(Pol(y), g), (Pol(x) * Pol(y)) % g);
        }
    }

    #[test]
    fn irreducible() {
        let tests = [
            (0x38f1e565e288df, false),
            (0x3DA3358B4DC173, true),
            (0x30a8295b9d5c91, false),
            (0x255f4350b962cb, false),
            (0x267f776110a235, false),
            (0x2f4dae10d41227, false),
            (0x2482734cacca49, true),
            (0x312daf4b284899, false),
            (0x29dfb6553d01d1, false),
            (0x3548245eb26257, false),
            (0x3199e7ef4211b3, false),
            (0x362f39017dae8b, false),
            (0x200d57aa6fdacb, false),
            (0x35e0a4efa1d275, false),
            (0x2ced55b026577f, false),
            (0x260b012010893d, false),
            (0x2df29cbcd59e9d, false),
            (0x3f2ac7488bd429, false),
            (0x3e5cb1711669fb, false),
            (0x226d8de57a9959, false),
            (0x3c8de80aaf5835, false),
            (0x2026a59efb219b, false),
            (0x39dfa4d13fb231, false),
            (0x3143d0464b3299, false),
        ];
        for (f, irred) in tests {
            assert_eq!(Pol(f).is_irreducible(), irred, "{f:x}");
        }
        // small cases: x^2+x+1 and x^3+x+1 are irreducible, x^2+1 = (x+1)^2
        // is not
        assert!(Pol(0b111).is_irreducible());
        assert!(Pol(0b1011).is_irreducible());
        assert!(!Pol(0b101).is_irreducible());
    }

    #[test]
    fn random() {
        let a = Pol::random();
        let b = Pol::random();
        for p in [a, b] {
            assert_eq!(p.deg(), 53);
            assert!(p.is_irreducible());
            assert_eq!(p.0 & 1, 1);
        }
        assert_ne!(a, b);
    }

    #[test]
    fn display_and_parse() {
        let p = Pol(0x3DA3358B4DC173);
        assert_eq!(p.to_string(), "3da3358b4dc173");
        assert_eq!(format!("{p:x}"), "3da3358b4dc173");
        assert_eq!("3da3358b4dc173".parse::<Pol>().unwrap(), p);
        assert_eq!("3DA3358B4DC173".parse::<Pol>().unwrap(), p);
        assert_eq!("25b468838dcb75".parse::<Pol>(), Ok(Pol(0x25b468838dcb75)));
        assert_eq!(
            "0000000000000000000ff".parse::<Pol>(),
            Ok(Pol(0xff)),
            "leading zeros are fine, like Go's ParseUint"
        );
        assert_eq!(Pol(0).to_string(), "0");
        for bad in [
            "",
            "0x3da3358b4dc173",
            "+3da3",
            "-1",
            " 3da3",
            "3da3 ",
            "3da_3",
            "g",
            "1ffffffffffffffff",
        ] {
            assert!(bad.parse::<Pol>().is_err(), "{bad:?} should not parse");
        }
        let e = "xyz".parse::<Pol>().unwrap_err();
        assert!(e.to_string().contains("\"xyz\""));
    }
}
