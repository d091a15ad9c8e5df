"""Reference APTs from electronic-structure codes: finite-field and finite-displacement routes.

Both routes give P[ξ,ζ] = ∂M_ξ/∂r_ζ in e, the one index convention of aptnn:
* field:        P_i[ξ,ζ] = ∂F_iζ/∂E_ξ  from forces at ±E along each axis (6 single points for all atoms);
* displacement: P_i[ξ,ζ] = ∂M_ξ/∂r_iζ  from dipoles at ±δ along each axis (6 single points per atom).
"""
from aptnn.label.routes import displacement_route, field_route

__all__ = ["displacement_route", "field_route"]
